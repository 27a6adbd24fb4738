//! The daemon's own process metrics (the `process_*` family every
//! Prometheus client exposes) and CRI-O's count of defunct processes on
//! the node, read from `/proc` at each scrape.

use std::collections::HashMap;
use std::path::Path;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

/// One value of a family this module reads.
struct Sample {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    value: f64,
}

fn family(s: Sample) -> MetricFamily {
    let mut metric = proto::Metric::default();
    if s.kind == MetricType::COUNTER {
        let mut c = proto::Counter::default();
        c.set_value(s.value);
        metric.set_counter(c);
    } else {
        let mut g = proto::Gauge::default();
        g.set_value(s.value);
        metric.set_gauge(g);
    }
    let mut f = MetricFamily::default();
    f.set_name(s.name.to_string());
    f.set_help(s.help.to_string());
    f.set_field_type(s.kind);
    f.set_metric(vec![metric]);
    f
}

fn descs(names: &[(&str, &str)]) -> Vec<Desc> {
    names
        .iter()
        .filter_map(|(name, help)| {
            Desc::new(name.to_string(), help.to_string(), vec![], HashMap::new()).ok()
        })
        .collect()
}

const PROCESS_FAMILIES: [(&str, &str); 6] = [
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
    ),
    ("process_open_fds", "Number of open file descriptors."),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
    ),
];

/// The daemon's CPU time, memory, descriptors and start time.
pub struct Process {
    descs: Vec<Desc>,
}

impl Process {
    /// The collector of this process.
    pub fn new() -> Self {
        Self {
            descs: descs(&PROCESS_FAMILIES),
        }
    }
}

/// What `/proc/self/stat` (and the system's clock tick, page size and boot
/// time) give.
#[derive(Debug, Default, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    start_time_seconds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
}

/// Parses `/proc/<pid>/stat`: the fields after the command's closing
/// parenthesis (state is field 3), `ticks` per second, `page` bytes,
/// `boot` in seconds since the epoch.
fn parse_stat(text: &str, ticks: f64, page: f64, boot: f64) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time_seconds: boot + field(22)? / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
    })
}

/// The boot time, `btime` of `/proc/stat`.
fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit on open files, from `/proc/self/limits`.
fn max_fds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn count_entries(dir: &Path) -> Option<f64> {
    Some(std::fs::read_dir(dir).ok()?.count() as f64)
}

impl Collector for Process {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as f64;
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t, ticks, page, boot_time().unwrap_or(0.0)))
            .unwrap_or_default();
        let values = [
            (MetricType::COUNTER, stat.cpu_seconds),
            (
                MetricType::GAUGE,
                count_entries(Path::new("/proc/self/fd")).unwrap_or(0.0),
            ),
            (MetricType::GAUGE, max_fds().unwrap_or(0.0)),
            (MetricType::GAUGE, stat.virtual_bytes),
            (MetricType::GAUGE, stat.resident_bytes),
            (MetricType::GAUGE, stat.start_time_seconds),
        ];
        PROCESS_FAMILIES
            .iter()
            .zip(values)
            .map(|((name, help), (kind, value))| {
                family(Sample {
                    name,
                    help,
                    kind,
                    value,
                })
            })
            .collect()
    }
}

const DEFUNCT: &str = "container_runtime_crio_processes_defunct";
const DEFUNCT_HELP: &str = "Total number of defunct processes in the node";

/// CRI-O's count of zombies on the node, from each `/proc/<pid>/stat`.
pub struct Defunct {
    descs: Vec<Desc>,
}

impl Defunct {
    /// The collector.
    pub fn new() -> Self {
        Self {
            descs: descs(&[(DEFUNCT, DEFUNCT_HELP)]),
        }
    }
}

/// The processes under `proc` in state Z.
fn defunct_processes(proc: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(|s| s == "Z"))
                .unwrap_or(false)
        })
        .count()
}

impl Collector for Defunct {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        vec![family(Sample {
            name: DEFUNCT,
            help: DEFUNCT_HELP,
            kind: MetricType::GAUGE,
            value: defunct_processes(Path::new("/proc")) as f64,
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command() {
        // A command with spaces and parentheses, as a process may name itself.
        let text = "42 (cri o) (x)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1000 123456789 2048 18446744073709551615";
        let s = parse_stat(text, 100.0, 4096.0, 1_700_000_000.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_bytes, 123456789.0);
        assert_eq!(s.resident_bytes, 2048.0 * 4096.0);
        assert_eq!(parse_stat("garbage", 100.0, 4096.0, 0.0), None);
    }

    #[test]
    fn zombies_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, state) in [("1", "S"), ("2", "Z"), ("3", "Z"), ("self", "Z")] {
            std::fs::create_dir(dir.path().join(pid)).unwrap();
            std::fs::write(
                dir.path().join(pid).join("stat"),
                format!("{pid} (a b) {state} 1"),
            )
            .unwrap();
        }
        assert_eq!(defunct_processes(dir.path()), 2);
    }
}
