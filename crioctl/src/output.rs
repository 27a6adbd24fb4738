//! Output formats shared by the verbs: JSON, YAML and tables.

use anyhow::Result;
use serde::Serialize;

/// `-o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Indented JSON.
    Json,
    /// YAML.
    Yaml,
    /// Aligned columns (verbs that list things).
    Table,
}

/// Prints `value` as JSON or YAML (a table falls back to JSON).
pub fn print<T: Serialize>(value: &T, format: Format) -> Result<()> {
    println!("{}", render(value, format)?);
    Ok(())
}

/// `value` in `format`, without the trailing newline.
pub fn render<T: Serialize>(value: &T, format: Format) -> Result<String> {
    Ok(match format {
        Format::Yaml => serde_yaml::to_string(value)?.trim_end().to_string(),
        Format::Json | Format::Table => serde_json::to_string_pretty(value)?,
    })
}

/// Left-aligned columns separated by three spaces, like crictl's tables.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        s
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let v = serde_json::json!({"a": [1, 2], "b": "x"});
        assert_eq!(render(&v, Format::Yaml).unwrap(), "a:\n- 1\n- 2\nb: x");
        assert!(render(&v, Format::Json).unwrap().contains("\"b\": \"x\""));
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["IMAGE", "TAG"],
            &[
                vec!["busybox".into(), "1.36".into()],
                vec!["b".into(), "latest".into()],
            ],
        );
        assert_eq!(t, "IMAGE     TAG\nbusybox   1.36\nb         latest");
    }
}
