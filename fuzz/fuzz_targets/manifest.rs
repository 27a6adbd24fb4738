//! Image manifests and indexes of any media type, and platform selection.
#![no_main]

use crio_image::manifest::{Manifest, Platform, parse, select};
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
];

fuzz_target!(|data: &[u8]| {
    let Some((kind, body)) = data.split_first() else {
        return;
    };
    if let Ok(Manifest::Index(manifests)) = parse(TYPES[*kind as usize % TYPES.len()], body) {
        let _ = select(&manifests, &Platform::host());
    }
});
