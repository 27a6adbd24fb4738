//! registries.conf text, and resolving and routing a name through it.
#![no_main]

use crio_image::reference::Reference;
use crio_image::registries::RegistriesConf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(conf) = RegistriesConf::parse(text, "fuzz.conf") {
        let _ = conf.resolve("busybox");
        if let Ok(r) = Reference::parse("quay.io/a/b:1") {
            let _ = conf.endpoints(&r);
        }
    }
});
