//! TLS for the streaming server: certificate and key (and a CA that client
//! certificates must chain to) from files, read again when they change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Reloading {
    /// Checks the files now (an error names the file and what is wrong).
    pub fn new(files: TlsFiles) -> Result<Self, String> {
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

    fn build(&self) -> Result<TlsAcceptor, String> {
        let f = &self.files;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &f.ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in certs(ca)? {
                    roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| format!("{}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs(&f.cert)?, key(&f.key)?)
            .map_err(|e| format!("{}: {e}", f.cert.display()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// The acceptor for a new connection: rebuilt if a file changed since
    /// the last one; the previous one while new files do not load.
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        let mtimes = self.mtimes();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
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
