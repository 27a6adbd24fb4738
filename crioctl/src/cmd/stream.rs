//! The streaming verbs: `exec` (interactive), `attach` and `port-forward`,
//! over the daemon's streaming server (WebSocket).

use std::io::IsTerminal;

use anyhow::{Context, Result, anyhow, bail};
use crio_api::client::CriClient;
use crio_api::cri::{AttachRequest, ExecRequest, PortForwardRequest};
use crio_streaming::Transport;
use crio_streaming::client::{Streams, forward};

use super::containers::ExecArgs;
use super::rpc_error;

/// `--transport` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TransportArg {
    /// SPDY/3.1, as kubelet and kubectl speak it.
    #[default]
    Spdy,
    /// WebSocket.
    Websocket,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Spdy => Transport::Spdy,
            TransportArg::Websocket => Transport::WebSocket,
        }
    }
}

/// Flags of `attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Streaming transport.
    #[arg(long, value_enum, default_value = "spdy")]
    pub transport: TransportArg,
    /// Send stdin.
    #[arg(short, long)]
    pub stdin: bool,
    /// The container has a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Container ID.
    pub id: String,
}

/// Flags of `port-forward`.
#[derive(Debug, clap::Args)]
pub struct PortForwardArgs {
    /// Streaming transport.
    #[arg(long, value_enum, default_value = "spdy")]
    pub transport: TransportArg,
    /// Pod sandbox ID.
    pub pod: String,
    /// `LOCAL:REMOTE` port pairs (LOCAL 0: any free port).
    #[arg(required = true)]
    pub ports: Vec<String>,
    /// Local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
}

/// Puts the terminal of stdin in raw mode until dropped.
struct RawTerminal(Option<rustix::termios::Termios>);

impl RawTerminal {
    fn enter(wanted: bool) -> Self {
        let stdin = std::io::stdin();
        if !wanted || !stdin.is_terminal() {
            return Self(None);
        }
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        Self(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

/// Terminal sizes of stdout: the current one, then one per SIGWINCH.
fn sizes(tty: bool) -> Option<tokio::sync::mpsc::Receiver<(u16, u16)>> {
    let stdout = std::io::stdout();
    if !tty || !stdout.is_terminal() {
        return None;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let size = || {
            rustix::termios::tcgetwinsize(std::io::stdout())
                .ok()
                .map(|w| (w.ws_col, w.ws_row))
        };
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        loop {
            if let Some(s) = size()
                && tx.send(s).await.is_err()
            {
                return;
            }
            if winch.recv().await.is_none() {
                return;
            }
        }
    });
    Some(rx)
}

async fn session(url: &str, stdin: bool, tty: bool, transport: TransportArg) -> Result<i32> {
    let _raw = RawTerminal::enter(tty && stdin);
    let streams = Streams {
        stdin: stdin.then(tokio::io::stdin),
        stdout: tokio::io::stdout(),
        stderr: tokio::io::stderr(),
        resize: sizes(tty),
    };
    // The message already holds its causes: printed with `{:#}`, a chain
    // would repeat them.
    crio_streaming::client::session(url, transport.into(), tty, streams)
        .await
        .map_err(|e| anyhow!("{e}"))
}

/// `exec` (without `-s`): an interactive session; its exit code.
pub async fn exec(client: &mut CriClient, args: &ExecArgs) -> Result<i32> {
    let url = client
        .runtime
        .exec(ExecRequest {
            container_id: args.id.clone(),
            cmd: args.cmd.clone(),
            tty: args.tty,
            stdin: args.interactive,
            stdout: true,
            stderr: !args.tty,
        })
        .await
        .map_err(|e| rpc_error("Exec", e))?
        .into_inner()
        .url;
    session(&url, args.interactive, args.tty, args.transport).await
}

/// `attach`.
pub async fn attach(client: &mut CriClient, args: &AttachArgs) -> Result<()> {
    let url = client
        .runtime
        .attach(AttachRequest {
            container_id: args.id.clone(),
            stdin: args.stdin,
            tty: args.tty,
            stdout: true,
            stderr: !args.tty,
        })
        .await
        .map_err(|e| rpc_error("Attach", e))?
        .into_inner()
        .url;
    session(&url, args.stdin, args.tty, args.transport)
        .await
        .map(|_| ())
}

fn parse_pair(pair: &str) -> Result<(u16, u16)> {
    let (local, remote) = pair.split_once(':').unwrap_or((pair, pair));
    let port = |p: &str| {
        p.parse::<u16>()
            .with_context(|| format!("bad port {p:?} in {pair:?}"))
    };
    let remote = port(remote)?;
    if remote == 0 {
        bail!("the remote port of {pair:?} must not be 0");
    }
    Ok((port(local)?, remote))
}

/// `port-forward`: listens on each local port and forwards every
/// connection to the pod's port, until interrupted.
pub async fn port_forward(client: &mut CriClient, args: &PortForwardArgs) -> Result<()> {
    let pairs: Vec<(u16, u16)> = args
        .ports
        .iter()
        .map(|p| parse_pair(p))
        .collect::<Result<_>>()?;
    let mut tasks = Vec::new();
    for (local, remote) in pairs {
        let listener = tokio::net::TcpListener::bind((args.address.as_str(), local))
            .await
            .with_context(|| format!("listen on {}:{local}", args.address))?;
        println!("Forwarding from {} -> {remote}", listener.local_addr()?);
        let client = client.clone();
        let pod = args.pod.clone();
        let next_url = move || {
            let mut client = client.clone();
            let pod = pod.clone();
            async move {
                client
                    .runtime
                    .port_forward(PortForwardRequest {
                        pod_sandbox_id: pod,
                        port: vec![i32::from(remote)],
                    })
                    .await
                    .map(|r| r.into_inner().url)
                    .map_err(|e| anyhow!("PortForward: {}", e.message()))
            }
        };
        tasks.push(tokio::spawn(forward(
            listener,
            remote,
            args.transport.into(),
            next_url,
        )));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs() {
        assert_eq!(parse_pair("8080:80").unwrap(), (8080, 80));
        assert_eq!(parse_pair("80").unwrap(), (80, 80));
        assert_eq!(parse_pair("0:80").unwrap(), (0, 80));
        assert!(parse_pair("1:0").is_err());
        assert!(parse_pair("x:80").is_err());
    }
}
