//! A real registry for tests: Debian's docker-registry on a free loopback
//! port, its storage in a temp dir, optionally behind htpasswd basic auth.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;

use crate::image::digest;

/// The registry binary Debian installs.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry; stopped and its storage removed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    auth: Option<(String, String)>,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl Registry {
    /// Starts an open registry.
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// Starts a registry that requires `user`/`password` (basic auth).
    pub fn start_with_auth(user: &str, password: &str) -> Result<Self> {
        Self::start_with(Some((user.to_string(), password.to_string())))
    }

    fn start_with(auth: Option<(String, String)>) -> Result<Self> {
        let mut last_error = None;
        // A port found free may be taken before the registry binds it: retry.
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("crio-test-registry-")
                .tempdir()?;
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let config = dir.path().join("config.yml");
            let mut yaml = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            );
            if let Some((user, password)) = &auth {
                let htpasswd = dir.path().join("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .context("run htpasswd (apache2-utils)")?;
                if !out.status.success() {
                    bail!("htpasswd: {}", String::from_utf8_lossy(&out.stderr));
                }
                std::fs::write(&htpasswd, &out.stdout)?;
                yaml += &format!(
                    "auth:\n  htpasswd:\n    realm: crio-test\n    path: {}\n",
                    htpasswd.display()
                );
            }
            std::fs::write(&config, yaml)?;
            let log = std::fs::File::create(dir.path().join("registry.log"))?;
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| {
                    format!("start {REGISTRY_BIN} (scripts/install-deps.sh installs it)")
                })?;
            let mut registry = Self {
                child,
                port,
                auth: auth.clone(),
                dir,
                agent: ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(30))
                    .build(),
            };
            match registry.wait_ready() {
                Ok(()) => return Ok(registry),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("registry exited with {status}: {}", self.log());
            }
            match self.agent.get(&self.url("/v2/")).call() {
                Ok(_) | Err(ureq::Error::Status(401, _)) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => bail!("registry not answering on port {}: {e}", self.port),
            }
        }
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps its data.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// An absolute URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let req = self.agent.request(method, url);
        match &self.auth {
            Some((u, p)) => {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                req.set("Authorization", &format!("Basic {token}"))
            }
            None => req,
        }
    }

    /// Uploads a blob (monolithic upload); returns its digest.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> Result<String> {
        let d = digest(data);
        let resp = self
            .request("POST", &self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .call()
            .with_context(|| format!("start upload to {repo}"))?;
        let location = resp.header("Location").context("upload has no Location")?;
        let location = if location.starts_with('/') {
            self.url(location)
        } else {
            location.to_string()
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        self.request("PUT", &format!("{location}{sep}digest={d}"))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(data)
            .with_context(|| format!("upload blob {d} to {repo}"))?;
        Ok(d)
    }

    /// Stores a manifest under `reference`; returns the registry's digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media: &str,
        body: &[u8],
    ) -> Result<String> {
        let resp = self
            .request(
                "PUT",
                &self.url(&format!("/v2/{repo}/manifests/{reference}")),
            )
            .set("Content-Type", media)
            .send_bytes(body)
            .map_err(|e| match e {
                ureq::Error::Status(code, r) => {
                    anyhow::anyhow!(
                        "put manifest {repo}:{reference}: {code}: {}",
                        r.into_string().unwrap_or_default()
                    )
                }
                other => anyhow::anyhow!("put manifest {repo}:{reference}: {other}"),
            })?;
        Ok(resp
            .header("Docker-Content-Digest")
            .map(str::to_string)
            .unwrap_or_else(|| digest(body)))
    }

    /// Fetches a manifest or blob path (`/v2/...`) as the registry serves it.
    pub fn get(&self, path: &str, accept: &str) -> Result<Vec<u8>> {
        let resp = self
            .request("GET", &self.url(path))
            .set("Accept", accept)
            .call()
            .with_context(|| format!("GET {path}"))?;
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut body)?;
        Ok(body)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
