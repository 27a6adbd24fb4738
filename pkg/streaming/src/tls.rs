//! TLS for the streaming server: certificate and key (and a CA that client
//! certificates must chain to) from files, read again when they change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

/// The files of the server's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate
    /// issued by one of them.
    pub ca: Option<PathBuf>,
}

/// An acceptor rebuilt whenever one of the files changes.
pub struct Reloading {
    files: TlsFiles,
    current: Mutex<Option<(Vec<Option<SystemTime>>, TlsAcceptor)>>,
}

/// Why the TLS identity does not load; names the file when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or is not PEM.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate.
    #[error("{}: no certificate", .0.display())]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("{}: no private key", .0.display())]
    NoKey(PathBuf),
    /// rustls refuses a certificate, the CA or the pair of certificate and
    /// key (`path` is the certificate's or the CA's file).
    #[error("{}: {source}", path.display())]
    Rejected {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The client certificate verifier cannot be built from the CA.
    #[error("{}: {source}", path.display())]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// Why.
        source: rustls::server::VerifierBuilderError,
    },
    /// The crypto provider supports no safe protocol version.
    #[error("{0}")]
    Provider(rustls::Error),
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError {
    move |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(read_error(path))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .map_err(read_error(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(read_error(path))?;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(read_error(path))?
        .ok_or_else(|| TlsError::NoKey(path.to_path_buf()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Reloading {
    /// Checks the files now (an error names the file and what is wrong).
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let r = Self {
            files,
            current: Mutex::new(None),
        };
        r.acceptor()?;
        Ok(r)
    }

    fn mtimes(&self) -> Vec<Option<SystemTime>> {
        let f = &self.files;
        [Some(&f.cert), Some(&f.key), f.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    fn build(&self) -> Result<TlsAcceptor, TlsError> {
        let f = &self.files;
        let rejected = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Rejected { path, source }
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Provider)?;
        let builder = match &f.ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in certs(ca)? {
                    roots.add(c).map_err(rejected(ca))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|source| TlsError::Verifier {
                            path: ca.clone(),
                            source,
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs(&f.cert)?, key(&f.key)?)
            .map_err(rejected(&f.cert))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// The acceptor for a new connection: rebuilt if a file changed since
    /// the last one; the previous one while new files do not load.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let mtimes = self.mtimes();
        let mut current = self.current.lock();
        if let Some((seen, acceptor)) = current.as_ref()
            && *seen == mtimes
        {
            return Ok(acceptor.clone());
        }
        match self.build() {
            Ok(a) => {
                *current = Some((mtimes, a.clone()));
                Ok(a)
            }
            Err(e) => match current.as_ref() {
                Some((_, previous)) => Ok(previous.clone()),
                None => Err(e),
            },
        }
    }
}
