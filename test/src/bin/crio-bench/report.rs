//! The results as a markdown table and an SVG chart.

use std::collections::BTreeMap;

use serde_json::Value;

/// Each measure as one number: the median for timed ones (and the p99
/// where it was taken).
fn flatten(v: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (section, m) in v.as_object().into_iter().flatten() {
        for (k, x) in m.as_object().into_iter().flatten() {
            let n = x.get("median_ms").unwrap_or(x).as_f64();
            if let Some(n) = n {
                let unit = if x.get("median_ms").is_some() {
                    " (median ms)"
                } else {
                    ""
                };
                out.insert(format!("{section}.{k}{unit}"), n);
            }
            if let Some(p99) = x.get("p99_ms").and_then(Value::as_f64) {
                out.insert(format!("{section}.{k} (p99 ms)"), p99);
            }
        }
    }
    out
}

/// A markdown table of every measure, both runtimes side by side.
pub(crate) fn markdown(results: &Value) -> String {
    let ours = flatten(&results["crio-rs"]);
    let reference = flatten(&results["containerd"]);
    let mut out = String::from(
        "| measure | crio-rs | containerd | containerd / crio-rs |\n|---|---|---|---|\n",
    );
    for (k, v) in &ours {
        let (theirs, ratio) = match reference.get(k) {
            Some(r) if *v > 0.0 => (format!("{r}"), format!("{:.2}", r / v)),
            Some(r) => (format!("{r}"), "-".into()),
            None => ("-".into(), "-".into()),
        };
        out += &format!("| {k} | {v} | {theirs} | {ratio} |\n");
    }
    for note in results["notes"].as_array().into_iter().flatten() {
        out += &format!("\nNote: {}\n", note.as_str().unwrap_or_default());
    }
    out
}

/// A horizontal bar chart (SVG) of the timed measures, both runtimes.
pub(crate) fn svg(results: &Value) -> String {
    let ours = flatten(&results["crio-rs"]);
    let reference = flatten(&results["containerd"]);
    let rows: Vec<(&String, f64, Option<f64>)> = ours
        .iter()
        .filter(|(k, _)| k.ends_with("(median ms)"))
        .map(|(k, v)| (k, *v, reference.get(k).copied()))
        .collect();
    let max = rows
        .iter()
        .map(|(_, a, b)| a.max(b.unwrap_or(0.0)))
        .fold(1.0, f64::max);
    let (label_w, bar_w, row_h) = (330.0, 420.0, 34.0);
    let height = 40.0 + row_h * rows.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect x=\"{label_w}\" y=\"8\" width=\"12\" height=\"10\" fill=\"#2b7bb9\"/><text x=\"{}\" y=\"17\">crio-rs</text>\n\
         <rect x=\"{}\" y=\"8\" width=\"12\" height=\"10\" fill=\"#bbbbbb\"/><text x=\"{}\" y=\"17\">containerd</text>\n",
        label_w + bar_w + 90.0,
        label_w + 16.0,
        label_w + 90.0,
        label_w + 106.0
    );
    for (i, (name, a, b)) in rows.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let label = name.trim_end_matches(" (median ms)");
        out += &format!("<text x=\"0\" y=\"{}\">{label}</text>\n", y + 14.0);
        for (j, (value, color)) in [(Some(*a), "#2b7bb9"), (*b, "#bbbbbb")]
            .into_iter()
            .enumerate()
        {
            if let Some(v) = value {
                let w = (v / max * bar_w).max(1.0);
                let by = y + j as f64 * 13.0;
                out += &format!(
                    "<rect x=\"{label_w}\" y=\"{by}\" width=\"{w:.1}\" height=\"11\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{}\">{v} ms</text>\n",
                    label_w + w + 4.0,
                    by + 10.0
                );
            }
        }
    }
    out + "</svg>\n"
}
