//! SPDY/3.1 frames as a streaming client sends them, header blocks (zlib
//! with the SPDY dictionary) included. Input starting with 0xff is taken as
//! header names and values instead: encoded, then read back unchanged.
#![no_main]

use crio_streaming::spdy::{Deflater, Frame, Inflater, encode, read_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut inflater = Inflater::default();
        if let Some((0xff, rest)) = data.split_first() {
            let text = String::from_utf8_lossy(rest);
            let headers: Vec<(String, String)> = text
                .split('\n')
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .collect();
            let frame = Frame::SynStream {
                id: 1,
                fin: false,
                headers,
            };
            let bytes = encode(&frame, &mut Deflater::default());
            let read = read_frame(&mut &bytes[..], &mut inflater).await;
            if let Ok(Some(back)) = read {
                assert_eq!(back, frame);
            }
            return;
        }
        let mut input = data;
        while let Ok(Some(_)) = read_frame(&mut input, &mut inflater).await {}
    });
});
