//! crio.conf text, merged over the defaults and validated.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(table) = text.parse::<toml::Table>() {
        let _ = crio_config::load_from_tables(vec![("crio.conf".into(), table)]);
    }
});
