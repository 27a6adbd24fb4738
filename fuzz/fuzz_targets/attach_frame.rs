//! Frames a client writes to a shim's attach socket.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut input = data;
        while let Ok((_, payload)) = crio_attach::read_frame(&mut input).await {
            assert!(payload.len() <= crio_attach::MAX_FRAME);
        }
    });
});
