//! Image configuration at run time: SIGHUP reloads registries.conf, and
//! pull_progress_timeout cancels a pull that makes no progress.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crio_test::cri::pull;
use crio_test::images::push_standard_images;
use crio_test::world::daemon_for;
use crio_test::{Registry, TestDaemon};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_registries_conf() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let daemon = daemon_for(&registry, "", "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    assert!(pull(&mut client, "newalias").await.is_err());

    let conf = daemon.path("containers/registries.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text += &format!(
        "[aliases]\n\"newalias\" = \"{}/test/busybox\"\n",
        registry.host()
    );
    std::fs::write(&conf, text).unwrap();
    kill(Pid::from_raw(daemon.pid().unwrap() as i32), Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("reloaded registries") {
        assert!(Instant::now() < deadline, "no reload: {}", daemon.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = pull(&mut client, "newalias").await.unwrap();
    assert_eq!(id, images.busybox.config_digest);

    // A broken file keeps the previous configuration.
    std::fs::write(&conf, "this is [not toml").unwrap();
    kill(Pid::from_raw(daemon.pid().unwrap() as i32), Signal::SIGHUP).unwrap();
    while !daemon.log().contains("reload failed") {
        assert!(
            Instant::now() < deadline + Duration::from_secs(5),
            "{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pull(&mut client, "newalias").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_registry_hits_the_progress_timeout() {
    // A server that accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            held.push(stream);
        }
    });
    let daemon = TestDaemon::start_with_files(
        &format!(
            "[crio.image]\nregistries_conf = \"{{dir}}/registries.conf\"\npull_progress_timeout = \"1s\"\ninsecure_registries = [\"{host}\"]\n"
        ),
        &[],
        &[("registries.conf", "")],
    )
    .unwrap();
    let mut client = daemon.client().await.unwrap();
    let started = Instant::now();
    let err = pull(&mut client, &format!("{host}/test/stuck:1"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(err.message().contains("timed out"), "{err:?}");
}
