//! WebSocket messages of the channel.k8s.io protocols, binary and base64.
#![no_main]

use crio_streaming::ws::{EXEC_PROTOCOLS, Protocol, negotiate};
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::Message;

fuzz_target!(|data: &[u8]| {
    let Some((pick, body)) = data.split_first() else {
        return;
    };
    let protocol = Protocol::of(EXEC_PROTOCOLS[*pick as usize % EXEC_PROTOCOLS.len()]);
    let msg = if pick & 0x80 == 0 {
        Message::binary(body.to_vec())
    } else {
        Message::text(String::from_utf8_lossy(body).into_owned())
    };
    if let Some((ch, payload)) = protocol.parse(msg) {
        // What parses encodes back to the same channel and data, for the
        // channels a protocol can carry (base64 text spells one digit).
        if !protocol.base64 || ch < 10 {
            assert_eq!(
                protocol.parse(protocol.message(ch, &payload)),
                Some((ch, payload))
            );
        }
    }
    let _ = negotiate(&String::from_utf8_lossy(body), &EXEC_PROTOCOLS);
});
