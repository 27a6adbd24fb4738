//! `crio status`: asks a running daemon's status API over its socket and
//! prints the answer.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

/// How long a status call may take, connecting included.
const DEADLINE: Duration = Duration::from_secs(10);

/// GETs `path` from the daemon on `socket` and prints the body; a failure
/// (no daemon, an unknown container) goes to stderr with a failing code.
pub fn run(socket: &Path, path: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crio status: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { tokio::time::timeout(DEADLINE, get(socket, path)).await }) {
        Ok(Ok(body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("crio status: {e:#}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "crio status: {} did not answer within {DEADLINE:?}",
                socket.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// The body of a successful GET of `path`.
async fn get(socket: &Path, path: &str) -> Result<String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connect to {}", socket.display()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        bail!("{path}: {status}: {}", text.trim_end());
    }
    Ok(text)
}
