//! crio-testworld: the test world by hand. `crio-testworld registry` starts
//! a registry with the standard test images and prints their references
//! until interrupted.

use std::time::Duration;

use anyhow::{Result, bail};
use crio_test::Registry;
use crio_test::images::push_standard_images;

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("registry") => {
            let registry = Registry::start()?;
            let images = push_standard_images(&registry)?;
            println!("registry: {} (plain HTTP)", registry.host());
            println!("{images:#?}");
            println!("Ctrl-C to stop");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        _ => bail!("usage: crio-testworld registry"),
    }
}
