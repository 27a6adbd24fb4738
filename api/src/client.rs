//! Connecting CRI clients (crioctl, tests, benchmarks) to a unix socket.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::cri::image_service_client::ImageServiceClient;
use crate::cri::runtime_service_client::RuntimeServiceClient;

/// Both CRI clients over one connection.
#[derive(Debug, Clone)]
pub struct CriClient {
    /// RuntimeService.
    pub runtime: RuntimeServiceClient<Channel>,
    /// ImageService.
    pub image: ImageServiceClient<Channel>,
}

/// Why a CRI client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint is not a unix socket.
    #[error("endpoint {0:?}: only unix sockets are supported (unix:///path/to/socket)")]
    NotUnix(String),
    /// The socket does not answer.
    #[error("connect to {path}: {}", with_cause(.source))]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// A transport error and its cause on one line: tonic's own text alone is
/// only "transport error".
fn with_cause(e: &tonic::transport::Error) -> String {
    let cause = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default();
    format!("{e} {cause}").trim_end().to_string()
}

/// The socket path of an endpoint given as `unix:///path` or `/path`.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ConnectError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(ConnectError::NotUnix(endpoint.to_string()))
    }
}

/// Connects to a CRI endpoint; `timeout` bounds the connection and each call.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<CriClient, ConnectError> {
    connect_with(endpoint, timeout, Some(timeout)).await
}

/// Connects to a CRI endpoint within `connect_timeout`; each call is bounded
/// by `call_timeout` when given (pulls take as long as they take).
pub async fn connect_with(
    endpoint: &str,
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
) -> Result<CriClient, ConnectError> {
    let path = socket_path(endpoint)?;
    let shown = path.display().to_string();
    // The URI is a placeholder: the connector below dials the socket.
    let mut endpoint = Endpoint::from_static("http://[::]:50051").connect_timeout(connect_timeout);
    if let Some(t) = call_timeout {
        endpoint = endpoint.timeout(t);
    }
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| ConnectError::Connect {
            path: shown,
            source,
        })?;
    Ok(CriClient {
        runtime: RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX),
        image: ImageServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/crio/crio.sock").unwrap(),
            PathBuf::from("/run/crio/crio.sock")
        );
        assert_eq!(socket_path("/x.sock").unwrap(), PathBuf::from("/x.sock"));
        assert!(
            socket_path("tcp://1.2.3.4:5")
                .unwrap_err()
                .to_string()
                .contains("unix")
        );
    }

    #[tokio::test]
    async fn missing_socket_names_the_path() {
        let err = connect("unix:///nonexistent/crio.sock", Duration::from_secs(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/crio.sock"), "{err}");
    }
}
