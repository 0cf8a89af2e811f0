//! The secret path and name parsers: no input panics, and whatever parses prints back to a
//! string that parses to the same value (so a path has exactly one spelling).
#![no_main]

use cloister_types::{Entrypoint, Environment, FunctionName, SecretPath, SecretRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = SecretPath::parse(s) {
        assert_eq!(SecretPath::parse(&p.to_string()).as_ref(), Ok(&p), "{s:?}");
    }
    if let Ok(r) = SecretRef::parse(s) {
        assert_eq!(SecretRef::parse(&r.to_string()).as_ref(), Ok(&r), "{s:?}");
    }
    let list: Vec<&str> = s.split('\n').collect();
    let _ = SecretRef::parse_declared(&list);
    let _ = FunctionName::parse(s);
    let _ = Entrypoint::parse(s);
    let _ = Environment::parse(s);
});
