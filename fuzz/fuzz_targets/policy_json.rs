//! policy.json text, and looking up the requirements of a reference.
#![no_main]

use crio_image::policy::Policy;
use crio_image::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::parse(text, "policy.json") {
        for name in [
            "docker.io/library/busybox:1",
            "localhost:5000/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let r = Reference::parse(name).unwrap();
            let _ = policy.requirements(&r);
            let _ = policy.needs_signatures(&r);
        }
    }
});
