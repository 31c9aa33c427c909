//! Fuzzes the agent's acknowledgement decoder: any bytes a collector can send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitoring_common::protocol::Ack;

fuzz_target!(|data: &[u8]| {
    if let Ok(ack) = Ack::decode(data) {
        assert_eq!(Ack::decode(&ack.encode()), Ok(ack));
    }
});
