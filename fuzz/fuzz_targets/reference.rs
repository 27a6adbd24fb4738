//! Image references as a request or registries.conf spells them.
#![no_main]

use crio_image::reference::{Reference, is_short_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = is_short_name(text);
    if let Ok(r) = Reference::parse(text) {
        // What parses prints back to something that parses the same.
        let again = Reference::parse(&r.to_string()).expect("a parsed reference reparses");
        assert_eq!(again.to_string(), r.to_string());
        let _ = r.name();
        let _ = r.manifest_reference();
    }
});
