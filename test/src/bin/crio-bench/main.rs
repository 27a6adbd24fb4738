//! crio-bench: measures crio-rs through its CRI socket with an in-process
//! client: pod and container lifecycle calls, ExecSync, listing, throughput
//! with concurrent clients, image pull and unpack, daemon and shim memory,
//! and recovery time. Prints a JSON document (and a markdown table with
//! `--markdown`, an SVG chart with `--svg FILE`). `--with-containerd` measures
//! Debian's containerd the same way; `--render FILE` re-renders a saved run;
//! `--smoke` takes a few samples, for CI; `--daemon-log FILE` keeps the
//! crio-rs daemon's log (per-step timings at debug level). `--only GROUPS`
//! (comma-separated: pods, containers, throughput, pleg, images) measures
//! those groups alone. `--tracing receiver|dead` has crio-rs export every
//! trace over OTLP to a receiver in this process, or to a port where
//! nothing listens.

mod images;
mod lifecycle;
mod pleg;
mod report;
mod target;

use anyhow::Result;
use crio_test::Registry;
use crio_test::containerd::Containerd;
use crio_test::images::{StandardImages, push_standard_images};
use crio_test::otlp::Receiver;
use crio_test::pods::{PodWorld, bridge_conflist};
use serde_json::{Value, json};

use crate::report::{markdown, svg};
use crate::target::Target;

/// What `--help` prints.
const USAGE: &str =
    "usage: crio-bench [--only pods,containers,throughput,pleg,images] [--clients N]
                  [--with-containerd] [--tracing receiver|dead] [--smoke]
                  [--markdown] [--svg FILE] [--daemon-log FILE] [--render FILE]
Measures crio-rs (and with --with-containerd Debian's containerd) through the CRI
socket and prints the figures as JSON.";

/// The command line: `--name value` options and `--flag`s.
struct Args(Vec<String>);

impl Args {
    fn option(&self, name: &str) -> Option<&String> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
    }

    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// `--only pods,throughput` measures those groups alone (all by default).
    fn wanted(&self, group: &str) -> bool {
        self.option("--only")
            .is_none_or(|o| o.split(',').any(|g| g == group))
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args(std::env::args().skip(1).collect());
    if args.flag("--help") || args.flag("-h") {
        println!("{USAGE}");
        return Ok(());
    }
    // Render a saved run instead of measuring.
    if let Some(saved) = args.option("--render") {
        let results: Value = serde_json::from_str(&std::fs::read_to_string(saved)?)?;
        if let Some(path) = args.option("--svg") {
            std::fs::write(path, svg(&results))?;
        }
        print!("{}", markdown(&results));
        return Ok(());
    }
    let mut results = json!({
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()},
    });
    // As on a node, where /run is a tmpfs.
    crio_test::daemon::keep_volatile_state_on_tmpfs();
    // Images (and the reference's pause image) come from a registry of the bench's own.
    let registry = Registry::start()?;
    let standard = push_standard_images(&registry)?;
    let (receiver, drop_in) = tracing(&args).await?;
    let targets = targets(&args, &registry, &standard, &drop_in)?;
    // What the reference cannot do here, said rather than skipped.
    let mut notes = Vec::new();
    if targets.len() > 1 {
        notes.push(
            "containerd runs with restrict_oom_score_adj = true: this host lacks CAP_SYS_RESOURCE, \
             so containers' oom_score_adj cannot go below containerd's own",
        );
    }
    for note in &notes {
        eprintln!("note: {note}");
    }
    results["notes"] = json!(notes);
    for mut target in targets {
        let name = target.name();
        results[name] = measure(&mut target, &args, &registry, &standard).await?;
        // The daemon's log holds its per-step timings (debug level).
        if let (Target::Crio(w), Some(path)) = (&target, args.option("--daemon-log")) {
            std::fs::write(path, w.daemon.log())?;
        }
    }
    if let Some(mode) = args.option("--tracing") {
        let received = receiver.as_ref().map(|r| r.spans().len());
        results["tracing"] = json!({"mode": mode, "spans_received": received});
    }
    println!("{}", serde_json::to_string_pretty(&results)?);
    if let Some(path) = args.option("--svg") {
        std::fs::write(path, svg(&results))?;
    }
    if args.flag("--markdown") {
        eprintln!("{}", markdown(&results));
    }
    Ok(())
}

/// With `--tracing receiver|dead`: the receiver (for `receiver`) and the
/// drop-in that has crio-rs trace every call to it (or to a dead port).
async fn tracing(args: &Args) -> Result<(Option<Receiver>, Vec<(String, String)>)> {
    let (receiver, endpoint) = match args.option("--tracing").map(String::as_str) {
        None => return Ok((None, Vec::new())),
        Some("receiver") => {
            let r = Receiver::start().await?;
            let endpoint = r.endpoint();
            (Some(r), endpoint)
        }
        Some("dead") => (None, "127.0.0.1:9".to_string()),
        Some(other) => anyhow::bail!("--tracing {other}: receiver or dead"),
    };
    let conf = format!(
        "[crio.tracing]\nenable_tracing = true\ntracing_endpoint = \"{endpoint}\"\n\
         tracing_sampling_rate_per_million = 1000000\n"
    );
    Ok((receiver, vec![("conf.d/90-tracing.conf".into(), conf)]))
}

/// crio-rs (with `drop_in` files), and containerd with `--with-containerd`.
fn targets(
    args: &Args,
    registry: &Registry,
    standard: &StandardImages,
    drop_in: &[(String, String)],
) -> Result<Vec<Target>> {
    let files: Vec<(&str, &str)> = drop_in
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let crio = PodWorld::start_with_registry_files(registry, "", &files)?;
    let mut targets = vec![Target::Crio(crio)];
    if args.flag("--with-containerd") {
        let pid = std::process::id();
        let bridge = format!("ctrd{}", pid % 1_000_000);
        let prefix = format!("10.{}.{}", 100 + (pid / 250) % 100, (pid + 125) % 250);
        let conflist = bridge_conflist(&bridge, &prefix);
        targets.push(Target::Containerd(
            Containerd::start(&registry.host(), &standard.pause.reference, &conflist)?,
            bridge,
        ));
    }
    Ok(targets)
}

/// The groups `--only` names (all by default) measured on one target.
async fn measure(
    target: &mut Target,
    args: &Args,
    registry: &Registry,
    standard: &StandardImages,
) -> Result<Value> {
    let name = target.name();
    let smoke = args.flag("--smoke");
    let (samples, many, files) = if smoke { (3, 5, 2) } else { (20, 100, 25) };
    let busybox = &standard.busybox.reference;
    let mut results = json!({});
    if args.wanted("pods") {
        eprintln!("measuring {name} pods...");
        results["pods"] = lifecycle::pods(target, samples, many).await?;
    }
    if args.wanted("containers") {
        eprintln!("measuring {name} containers...");
        results["containers"] = lifecycle::containers(target, busybox, samples, many).await?;
    }
    if args.wanted("throughput") {
        eprintln!("measuring {name} throughput...");
        let (pods, mut concurrency) = if smoke {
            (4, vec![1, 2])
        } else {
            (50, vec![1, 5, 10])
        };
        // `--clients 10` measures with that many clients alone.
        if let Some(n) = args.option("--clients") {
            concurrency = vec![n.parse()?];
        }
        results["throughput"] = lifecycle::throughput(target, busybox, pods, &concurrency).await?;
    }
    if args.wanted("pleg") {
        eprintln!("measuring {name} PLEG under churn...");
        let scale = match smoke {
            true => pleg::Scale {
                pods: 2,
                per_pod: 2,
                samples: 10,
            },
            false => pleg::Scale {
                pods: 30,
                per_pod: 10,
                samples: 500,
            },
        };
        results["pleg"] = pleg::pleg(target, busybox, &scale).await?;
    }
    if args.wanted("images") {
        eprintln!("measuring {name} pulls...");
        results["images"] =
            images::images(target, registry, if smoke { 1 } else { 5 }, files).await?;
    }
    Ok(results)
}
