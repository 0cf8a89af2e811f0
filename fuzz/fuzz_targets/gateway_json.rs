//! The gateway's JSON request bodies, decoded and validated exactly as its handlers do:
//! a deploy through every check before compilation, token creation, signed authority
//! requests and invocation parameters. No input may panic, and validation is linear.
#![no_main]

use cloister_gateway::body::parse_json;
use cloister_gateway::deploy::check_deploy;
use cloister_types::ServerLimits;
use cloister_types::wire::{DeployRequest, InvokeRequest, SignedBody, TokenCreateRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_json::<DeployRequest>(data) {
        let _ = check_deploy(&ServerLimits::default(), req);
    }
    let _ = parse_json::<TokenCreateRequest>(data);
    let _ = parse_json::<SignedBody>(data);
    let _ = parse_json::<InvokeRequest>(data);
    let _ = serde_json::from_slice::<Box<serde_json::value::RawValue>>(data);
});
