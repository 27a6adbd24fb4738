//! The streaming server over TLS, checked with openssl-made certificates
//! and curl: client certificates from the CA are required, others refused,
//! and new files are picked up without a restart.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crio_streaming::tls::TlsFiles;
use crio_streaming::{
    AttachRequest, Backend, BackendError, Connection, ExecRequest, PortForwardRequest, Request,
    Server, ServerConfig, StreamIo,
};

struct Nothing;

#[async_trait::async_trait]
impl Backend for Nothing {
    async fn exec(&self, _: &ExecRequest, _: StreamIo) -> Result<i32, BackendError> {
        Ok(0)
    }
    async fn attach(&self, _: &AttachRequest, _: StreamIo) -> Result<(), BackendError> {
        Ok(())
    }
    async fn port_forward(
        &self,
        _: &str,
        _: u16,
        _: Box<dyn Connection>,
    ) -> Result<(), BackendError> {
        Ok(())
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `name`, and a certificate `leaf` it signs with extensions `ext`.
fn ca_and_leaf(dir: &Path, ca: &str, leaf: &str, ext: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    if !dir.join(format!("{ca}.crt")).exists() {
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        let (key, crt, subj) = (
            format!("{ca}.key"),
            format!("{ca}.crt"),
            format!("/CN={ca}"),
        );
        args.extend(["-keyout", &key, "-out", &crt, "-days", "1", "-subj", &subj]);
        openssl(dir, &args);
    }
    std::fs::write(dir.join(format!("{leaf}.ext")), ext).unwrap();
    let mut args = vec!["req"];
    args.extend(ec);
    let (key, csr) = (format!("{leaf}.key"), format!("{leaf}.csr"));
    args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    openssl(dir, &args);
    let (ca_crt, ca_key, crt, extfile) = (
        format!("{ca}.crt"),
        format!("{ca}.key"),
        format!("{leaf}.crt"),
        format!("{leaf}.ext"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "1",
            "-extfile",
            &extfile,
        ],
    );
}

const SERVER_EXT: &str = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
const CLIENT_EXT: &str = "extendedKeyUsage=clientAuth\n";

/// curl's HTTP status for `url`, "000" when the TLS handshake failed.
fn curl(dir: &Path, url: &str, ca: &str, client: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.current_dir(dir)
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(format!("{ca}.crt"));
    if let Some(c) = client {
        cmd.arg("--cert")
            .arg(format!("{c}.crt"))
            .arg("--key")
            .arg(format!("{c}.key"));
    }
    let out = cmd.arg(url).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn client_certificates_are_required_and_files_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ca_and_leaf(d, "ca", "server", SERVER_EXT);
    ca_and_leaf(d, "ca", "client", CLIENT_EXT);
    ca_and_leaf(d, "rogue", "intruder", CLIENT_EXT);
    let config = ServerConfig {
        tls: Some(TlsFiles {
            cert: d.join("server.crt"),
            key: d.join("server.key"),
            ca: Some(d.join("ca.crt")),
        }),
        ..Default::default()
    };
    let server = Server::start(config, Arc::new(Nothing)).await.unwrap();
    let url = server
        .url(Request::PortForward(PortForwardRequest::default()))
        .unwrap();
    assert!(url.starts_with("https://"), "{url}");
    let garbage = format!("https://{}/exec/garbage", server.local_addr());
    let dir = d.to_path_buf();
    let g = garbage.clone();
    let results = tokio::task::spawn_blocking(move || {
        (
            curl(&dir, &g, "ca", Some("client")),
            curl(&dir, &g, "ca", None),
            curl(&dir, &g, "ca", Some("intruder")),
        )
    })
    .await
    .unwrap();
    assert_eq!(results, ("404".into(), "000".into(), "000".into()));

    // New server files signed by another CA: picked up at the next
    // connection.
    ca_and_leaf(d, "ca2", "server2", SERVER_EXT);
    std::fs::copy(d.join("server2.key"), d.join("server.key")).unwrap();
    std::fs::copy(d.join("server2.crt"), d.join("server.crt")).unwrap();
    let dir = d.to_path_buf();
    let results = tokio::task::spawn_blocking(move || {
        (
            curl(&dir, &garbage, "ca2", Some("client")),
            curl(&dir, &garbage, "ca", Some("client")),
        )
    })
    .await
    .unwrap();
    assert_eq!(results, ("404".into(), "000".into()));
}

#[tokio::test]
async fn broken_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("empty.crt"), "").unwrap();
    let config = ServerConfig {
        tls: Some(TlsFiles {
            cert: tmp.path().join("empty.crt"),
            key: tmp.path().join("missing.key"),
            ca: None,
        }),
        ..Default::default()
    };
    let err = Server::start(config, Arc::new(Nothing))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("empty.crt"), "{err}");
}
