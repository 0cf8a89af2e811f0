//! The worker frame protocol, read from both ends: arbitrary bytes as the stream a worker
//! reads (supervisor → worker) and as the stream the supervisor reads (worker → supervisor).
//! Every decoded message must encode again into a frame that decodes.
#![no_main]

use cloister_sandbox::frame::{body_len, encode, read_msg};
use cloister_sandbox::protocol::{FromWorker, ToWorker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(header) = data.first_chunk::<4>() {
        let _ = body_len(*header);
    }
    let mut stream = data;
    while let Ok(msg) = read_msg::<ToWorker>(&mut stream) {
        let again = encode(&msg).expect("a decoded message encodes");
        read_msg::<ToWorker>(&mut again.as_slice()).expect("and decodes again");
    }
    let mut stream = data;
    while let Ok(msg) = read_msg::<FromWorker>(&mut stream) {
        let again = encode(&msg).expect("a decoded message encodes");
        read_msg::<FromWorker>(&mut again.as_slice()).expect("and decodes again");
    }
});
