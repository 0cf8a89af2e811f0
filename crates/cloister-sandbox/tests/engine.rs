//! The QuickJS engine against every reference workload, in-process (no hardening).

use std::collections::BTreeMap;

use std::rc::Rc;

use cloister_sandbox::engine::Engine;
use cloister_sandbox::host::{LocalHost, LogLines};
use cloister_sandbox::protocol::{ErrorCode, InvocationContext, Invoke, Load, LoadError, Outcome};
use serde_json::{Value, json};

fn workload(name: &str) -> String {
    let path = format!(
        "{}/../../examples/workloads/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(code: &str) -> Load {
    Load {
        code: code.to_owned(),
        entrypoint: "handler".into(),
        memory_bytes: 64 << 20,
        stack_bytes: 1 << 20,
        load_timeout_ms: 1000,
        max_output_bytes: 1 << 20,
        source_name: "function.js".into(),
        env: Default::default(),
        keys: Vec::new(),
        egress: false,
    }
}

/// An engine whose host refuses every capability (log lines are kept and dropped).
fn new_engine(l: Load) -> Result<Engine, LoadError> {
    Engine::new(l, Rc::new(LocalHost::default()))
}

/// An engine and its host, to read what the code logged.
fn logging_engine(l: Load) -> (Engine, Rc<LocalHost>) {
    let host = Rc::new(LocalHost::default());
    (Engine::new(l, host.clone()).unwrap(), host)
}

/// The log lines of one call as the supervisor keeps them: what the host received, bounded
/// again, with the worker's count of dropped lines.
fn supervised_logs(host: &LocalHost, o: &Outcome) -> Vec<String> {
    let mut lines = LogLines::default();
    for l in host.take_lines() {
        lines.push(l);
    }
    lines.add_dropped(o.logs_dropped);
    lines.finish()
}

fn invoke_with(
    engine: &mut Engine,
    params: Value,
    secrets: &[(&str, &str)],
    timeout_ms: u64,
) -> Outcome {
    engine.invoke(Invoke {
        params: serde_json::value::to_raw_value(&params).unwrap(),
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        context: InvocationContext {
            function_name: "demo".into(),
            function_id: "fn-1".into(),
            version: 3,
            execution_id: "exec-1".into(),
            timeout_ms,
        },
        binary_secrets: Default::default(),
        secret_refs: Default::default(),
    })
}

fn ok(o: Outcome) -> Value {
    match o.result {
        Ok(raw) => serde_json::from_str(raw.get()).unwrap(),
        Err(f) => panic!("expected success, got {f:?}"),
    }
}

fn run(file: &str, params: Value) -> Outcome {
    let mut e = new_engine(load(&workload(file))).unwrap();
    invoke_with(&mut e, params, &[], 1000)
}

#[test]
fn add() {
    assert_eq!(
        ok(run("add.js", json!({"a": 2, "b": 3}))),
        json!({"sum": 5})
    );
}

#[test]
fn json_transform() {
    let orders = json!({"orders": [
        {"id": 1, "amount": 12.5, "status": "paid"},
        {"id": 2, "amount": 7.25, "status": "paid"},
        {"id": 3, "amount": 100, "status": "refunded"}]});
    assert_eq!(
        ok(run("json-transform.js", orders)),
        json!({"count": 2, "total": 19.75, "byStatus": {"paid": 2, "refunded": 1}})
    );
}

#[test]
fn sha256_matches_fips_vector() {
    assert_eq!(
        ok(run("sha256.js", json!({"text": "abc", "rounds": 1}))),
        json!({"digest": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"})
    );
}

#[test]
fn async_handlers_are_awaited() {
    assert_eq!(
        ok(run("async.js", json!({"items": [1, 2, 3]}))),
        json!({"doubled": [2, 4, 6]})
    );
}

#[test]
fn hello_sees_declared_secret_and_context() {
    let mut e = new_engine(load(&workload("hello.js"))).unwrap();
    let out = ok(invoke_with(
        &mut e,
        json!({"a": 2, "b": 3}),
        &[("API_KEY", "k-123456")],
        1000,
    ));
    assert_eq!(out, json!({"sum": 5, "keyLength": 8, "fn": "demo"}));
}

#[test]
fn infinite_loop_times_out_and_retires() {
    let o = run("infinite-loop.js", json!({}));
    assert!(o.retire);
    assert_eq!(o.result.unwrap_err().code, ErrorCode::FunctionTimeout);
}

#[test]
fn memory_bomb_hits_memory_limit_and_retires() {
    let mut e = new_engine(load(&workload("memory-bomb.js"))).unwrap();
    let o = invoke_with(&mut e, json!({}), &[], 5000);
    assert!(o.retire);
    assert_eq!(o.result.unwrap_err().code, ErrorCode::FunctionMemoryLimit);
}

#[test]
fn deep_recursion_is_a_clean_error_and_retires() {
    let o = run("deep-recursion.js", json!({}));
    assert!(o.retire);
    let f = o.result.unwrap_err();
    assert_eq!(f.code, ErrorCode::FunctionError);
    assert!(f.message.contains("stack"), "{}", f.message);
}

#[test]
fn escape_probe_finds_nothing() {
    let out = ok(run("escape-probe.js", json!({})));
    assert_eq!(out["reachable"], json!([]), "{out}");
    assert!(out["checked"].as_u64().unwrap() >= 40);
}

/// Each way of running out of memory of `memory-ways.js`, under a 32 MB limit.
fn out_of_memory(way: &str) {
    let mut l = load(&workload("memory-ways.js"));
    l.memory_bytes = 32 << 20;
    let mut e = new_engine(l).unwrap();
    let o = invoke_with(&mut e, json!({ "way": way }), &[], 20_000);
    assert!(o.retire, "{way}: the worker must be replaced");
    let f = o.result.unwrap_err();
    assert_eq!(f.code, ErrorCode::FunctionMemoryLimit, "{way}: {f:?}");
    assert_eq!(f.message, "function exceeded its memory limit of 32 MB");
}

#[test]
fn out_of_memory_growing_a_string() {
    out_of_memory("string");
}

#[test]
fn out_of_memory_growing_arrays() {
    out_of_memory("array");
}

#[test]
fn out_of_memory_with_many_small_objects() {
    out_of_memory("objects");
}

#[test]
fn out_of_memory_in_a_map() {
    out_of_memory("map");
}

#[test]
fn out_of_memory_with_typed_arrays() {
    out_of_memory("typed-array");
}

#[test]
fn out_of_memory_parsing_json() {
    out_of_memory("json");
}

#[test]
fn out_of_memory_in_regex_work() {
    out_of_memory("regex");
}

#[test]
fn out_of_memory_caught_by_the_code_is_still_the_memory_limit() {
    out_of_memory("caught");
}

#[test]
fn every_invocation_gets_fresh_globals() {
    let mut e = new_engine(load(&workload("state-leak.js"))).unwrap();
    for _ in 0..5 {
        assert_eq!(
            ok(invoke_with(&mut e, json!({}), &[], 1000)),
            json!({"seen": 0})
        );
    }
}

#[test]
fn prototypes_and_closures_do_not_leak_between_calls() {
    let code = "function handler(p) { const before = typeof Array.prototype.pwned;
        Array.prototype.pwned = 1; Object.prototype.x = (Object.prototype.x || 0) + 1;
        return { before, x: ({}).x }; }";
    let mut e = new_engine(load(code)).unwrap();
    for _ in 0..3 {
        assert_eq!(
            ok(invoke_with(&mut e, json!(null), &[], 1000)),
            json!({"before": "undefined", "x": 1})
        );
    }
}

#[test]
fn secrets_and_context_are_frozen() {
    let code = "function handler(p, s, c) { 'use strict'; let r = [];
        try { s.K = 'x'; r.push('wrote'); } catch (e) { r.push(e.name); }
        try { c.functionName = 'x'; r.push('wrote'); } catch (e) { r.push(e.name); }
        return { r, k: s.K, fn: c.functionName, id: c.functionId, v: c.version, ex: c.executionId,
                 dl: typeof c.deadlineMs }; }";
    let mut e = new_engine(load(code)).unwrap();
    let out = ok(invoke_with(&mut e, json!(null), &[("K", "v")], 1000));
    assert_eq!(
        out,
        json!({"r": ["TypeError", "TypeError"], "k": "v", "fn": "demo", "id": "fn-1",
        "v": 3, "ex": "exec-1", "dl": "number"})
    );
}

#[test]
fn tampering_with_freeze_before_the_call_does_not_unfreeze() {
    let code = "Object.freeze = function (o) { return o; };
        function handler(p, s) { 'use strict'; try { s.K = 'x'; return 'mutable'; } catch (e) { return 'frozen'; } }";
    let mut e = new_engine(load(code)).unwrap();
    assert_eq!(
        ok(invoke_with(&mut e, json!(null), &[("K", "v")], 1000)),
        json!("frozen")
    );
}

#[test]
fn logs_are_captured_and_bounded() {
    let code = "function handler(p, s, c) { c.log('hello', 42, {a: 1}, [1], null, undefined);
        for (let i = 0; i < 500; i++) c.log('x'.repeat(10000)); return 1; }";
    let (mut e, host) = logging_engine(load(code));
    let o = invoke_with(&mut e, json!(null), &[], 1000);
    let logs = supervised_logs(&host, &o);
    assert_eq!(logs[0], "hello 42 {\"a\":1} [1] null undefined");
    assert!(logs.len() <= 101);
    assert!(logs.iter().map(|l| l.len()).sum::<usize>() <= 64 * 1024 + 200);
    assert!(logs.last().unwrap().contains("dropped"));
    assert!(logs[1].len() <= 4100);
}

/// Peak resident memory of this test process, in KiB.
fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage fills a local struct.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss
    }
}

#[test]
fn logging_one_large_value_many_times_copies_it_at_most_once_per_line() {
    // 2000 references to one 1 MiB string: converting each would copy 2 GiB out of a 16 MiB
    // heap; the line fills after the first, so nothing else is converted.
    let code = "function handler(p, s, c) { const big = 'x'.repeat(1 << 20);
        c.log(...new Array(2000).fill(big));
        for (let i = 0; i < 300; i++) c.log(big, big, big);
        return 1; }";
    let mut l = load(code);
    l.memory_bytes = 16 << 20;
    let (mut e, host) = logging_engine(l);
    let before = peak_rss_kib();
    let o = invoke_with(&mut e, json!(null), &[], 5000);
    let logs = supervised_logs(&host, &o);
    let grown_mib = (peak_rss_kib() - before) / 1024;
    assert!(o.result.is_ok(), "{:?}", o.result);
    assert!((4096..=4100).contains(&logs[0].len()), "{}", logs[0].len());
    assert!(logs.last().unwrap().contains("dropped"));
    assert!(
        grown_mib < 200,
        "logging grew the process by {grown_mib} MiB"
    );
}

#[test]
fn logs_survive_code_that_keeps_the_context_reachable() {
    let code = "function handler(p, s, c) { const o = { c }; o.self = o; globalThis.keep = o;
        c.log('hello'); return 1; }";
    let (mut e, host) = logging_engine(load(code));
    let o = invoke_with(&mut e, json!(null), &[], 1000);
    assert_eq!(supervised_logs(&host, &o), vec!["hello".to_owned()]);
}

#[test]
fn an_error_that_only_says_out_of_memory_is_the_function_s_own() {
    let code = "function handler() { throw new Error('not really out of memory'); }";
    let mut e = new_engine(load(code)).unwrap();
    let o = invoke_with(&mut e, json!(null), &[], 1000);
    assert!(!o.retire, "no limit was hit");
    let f = o.result.unwrap_err();
    assert_eq!(f.code, ErrorCode::FunctionError);
    assert_eq!(f.message, "Error: not really out of memory");
}

#[test]
fn syntax_errors_name_line_and_column() {
    let err = new_engine(load("function handler() {\n  return 1 +;\n}"))
        .err()
        .unwrap();
    assert_eq!(err.line, Some(2), "{err:?}");
    assert!(err.column.is_some(), "{err:?}");
    assert!(err.message.contains("SyntaxError"), "{err:?}");
}

#[test]
fn missing_entrypoint_is_a_load_error() {
    let err = new_engine(load("function other() {}")).err().unwrap();
    assert!(err.message.contains("handler"), "{err:?}");
    let mut l = load("const main = () => 7;");
    l.entrypoint = "main".into();
    let mut e = new_engine(l).unwrap();
    assert_eq!(ok(invoke_with(&mut e, json!(null), &[], 1000)), json!(7));
}

#[test]
fn a_built_in_is_no_entrypoint_unless_the_code_defines_it() {
    // `eval` as the entrypoint would run the caller's parameters as code, with any code (here
    // none of the developer's functions) standing in as the "function".
    for builtin in ["eval", "Function", "parseInt", "Object"] {
        let mut l = load("const x = 1;");
        l.entrypoint = builtin.into();
        let err = new_engine(l)
            .err()
            .unwrap_or_else(|| panic!("{builtin} accepted"));
        assert!(err.message.contains("not a top-level function"), "{err:?}");
    }
    // Code that defines a function of that name may use it.
    let mut l = load("function parseInt() { return 'mine'; }");
    l.entrypoint = "parseInt".into();
    let mut e = new_engine(l).unwrap();
    assert_eq!(
        ok(invoke_with(&mut e, json!(null), &[], 1000)),
        json!("mine")
    );
}

#[test]
fn top_level_infinite_loop_cannot_hang_a_deploy() {
    let err = new_engine(load("while (true) {}\nfunction handler() {}"))
        .err()
        .unwrap();
    assert!(err.message.contains("deadline"), "{err:?}");
}

#[test]
fn errors_carry_message_and_stack() {
    let code = "function handler() { throw new TypeError('bad input'); }";
    let mut e = new_engine(load(code)).unwrap();
    let o = invoke_with(&mut e, json!(null), &[], 1000);
    assert!(!o.retire);
    let f = o.result.unwrap_err();
    assert_eq!(f.code, ErrorCode::FunctionError);
    assert_eq!(f.message, "TypeError: bad input");
    assert!(f.stack.unwrap().contains("function.js:1"));
    let mut e = new_engine(load("function handler() { throw 'plain'; }")).unwrap();
    assert_eq!(
        invoke_with(&mut e, json!(null), &[], 1000)
            .result
            .unwrap_err()
            .message,
        "Uncaught plain"
    );
    let mut e = new_engine(load(
        "async function handler() { throw new Error('async'); }",
    ))
    .unwrap();
    assert_eq!(
        invoke_with(&mut e, json!(null), &[], 1000)
            .result
            .unwrap_err()
            .message,
        "Error: async"
    );
}

#[test]
fn unserialisable_and_oversized_results_are_invalid_output() {
    for code in [
        "function handler() { return 10n; }",
        "function handler() { const a = {}; a.a = a; return a; }",
        "function handler() { return function () {}; }",
    ] {
        let mut e = new_engine(load(code)).unwrap();
        let f = invoke_with(&mut e, json!(null), &[], 1000)
            .result
            .unwrap_err();
        assert_eq!(f.code, ErrorCode::FunctionInvalidOutput, "{code}: {f:?}");
    }
    let mut l = load("function handler() { return 'x'.repeat(2000); }");
    l.max_output_bytes = 1000;
    let mut e = new_engine(l).unwrap();
    assert_eq!(
        invoke_with(&mut e, json!(null), &[], 1000)
            .result
            .unwrap_err()
            .code,
        ErrorCode::FunctionInvalidOutput
    );
    let mut e = new_engine(load("function handler() {}")).unwrap();
    assert_eq!(ok(invoke_with(&mut e, json!(null), &[], 1000)), json!(null));
}

#[test]
fn never_settling_promise_is_an_error_not_a_hang() {
    let mut e = new_engine(load("function handler() { return new Promise(() => {}); }")).unwrap();
    let f = invoke_with(&mut e, json!(null), &[], 1000)
        .result
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::FunctionError);
    assert!(f.message.contains("never settle"), "{}", f.message);
}

#[test]
fn engine_survives_errors_and_keeps_serving() {
    let code = "function handler(p) { if (p.fail) throw new Error('no'); return p.n * 2; }";
    let mut e = new_engine(load(code)).unwrap();
    assert!(
        invoke_with(&mut e, json!({"fail": true}), &[], 1000)
            .result
            .is_err()
    );
    assert_eq!(
        ok(invoke_with(&mut e, json!({"n": 21}), &[], 1000)),
        json!(42)
    );
}

#[test]
fn cross_call_channels_are_not_reachable() {
    let code = "function handler() { return ['SharedArrayBuffer', 'Atomics', 'WeakRef',
        'FinalizationRegistry', 'queueMicrotask'].filter(n => typeof globalThis[n] !== 'undefined'); }";
    let mut e = new_engine(load(code)).unwrap();
    for _ in 0..2 {
        assert_eq!(ok(invoke_with(&mut e, json!(null), &[], 1000)), json!([]));
    }
}

#[test]
fn a_job_left_queued_retires_the_worker_instead_of_running_in_the_next_call() {
    // The call plants a promise job it does not await.
    let code = "function handler(p) { if (p.plant) { Promise.resolve().then(() => {
        const end = Date.now() + 2000; while (Date.now() < end) {} }); } return 1; }";
    let mut e = new_engine(load(code)).unwrap();
    let planted = invoke_with(&mut e, json!({"plant": true}), &[], 1000);
    assert!(planted.retire, "a worker with a queued job is not reused");
    assert_eq!(ok(planted), json!(1));
    // An awaited promise leaves nothing behind: the worker is kept.
    let clean = "async function handler() { await Promise.resolve(); return 2; }";
    let mut e = new_engine(load(clean)).unwrap();
    let o = invoke_with(&mut e, json!(null), &[], 1000);
    assert!(!o.retire);
    assert_eq!(ok(o), json!(2));
}

#[test]
fn context_sign_exists_only_with_declared_keys_and_settles_with_the_host_s_answer() {
    use cloister_sandbox::host::{HostRefusal, HostRequest, HostValue, SignHash};
    let code = "async function handler(p, s, c) {
        if (p.probe) return [typeof c.sign, typeof c.publicKey];
        const sig = await c.sign('main', new Uint8Array([104, 105]), {hash: 'keccak256'});
        const str = await c.sign('main', 'hi');
        const pk = await c.publicKey('main');
        let refused;
        try { await c.sign('other', 'x'); } catch (e) { refused = [e.code, e.message, e instanceof Error]; }
        let bad;
        try { await c.sign('main', 42); } catch (e) { bad = e.code; }
        return { sig: Array.from(sig.signature), rid: sig.recoveryId, v: sig.keyVersion,
                 alg: sig.algorithm, same: Array.from(str.signature), pk: Array.from(pk.publicKey),
                 refused, bad };
    }";
    // Without declared keys there is no such function on `context`.
    let mut plain = new_engine(load(code)).unwrap();
    assert_eq!(
        ok(invoke_with(&mut plain, json!({"probe": true}), &[], 1000)),
        json!(["undefined", "undefined"])
    );
    let mut l = load(code);
    l.keys = vec!["main".into()];
    let seen = Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen2 = seen.clone();
    let host = LocalHost::answering(move |r| {
        seen2.borrow_mut().push(r.clone());
        match r {
            HostRequest::Sign { key, message, .. } if key == "main" => Ok(HostValue::Signature {
                signature: message.clone(),
                algorithm: "ecdsa-secp256k1".into(),
                key_version: 3,
                recovery_id: Some(1),
            }),
            HostRequest::PublicKey { .. } => Ok(HostValue::PublicKey {
                public_key: "BAU=".into(),
                algorithm: "ecdsa-secp256k1".into(),
                key_version: 3,
            }),
            _ => Err(HostRefusal::new(ErrorCode::KeyNotDeclared, "not declared")),
        }
    });
    let mut e = Engine::new(l, Rc::new(host)).unwrap();
    let v = ok(invoke_with(&mut e, json!({}), &[], 1000));
    // The host echoed the message as the "signature": what the code passed arrived intact.
    assert_eq!(v["sig"], json!([104, 105]));
    assert_eq!(
        v["same"],
        json!([104, 105]),
        "a string is signed as its UTF-8"
    );
    assert_eq!((v["rid"].clone(), v["v"].clone()), (json!(1), json!(3)));
    assert_eq!(v["alg"], "ecdsa-secp256k1");
    assert_eq!(v["pk"], json!([4, 5]));
    assert_eq!(
        v["refused"],
        json!(["key_not_declared", "not declared", true])
    );
    assert_eq!(
        v["bad"], "invalid_request",
        "a bad argument is refused before any call"
    );
    let seen = seen.borrow();
    assert_eq!(
        seen.len(),
        4,
        "sign, sign, publicKey, sign(other): {seen:?}"
    );
    assert!(matches!(
        &seen[0],
        HostRequest::Sign {
            hash: SignHash::Keccak256,
            ..
        }
    ));
    assert!(matches!(
        &seen[1],
        HostRequest::Sign {
            hash: SignHash::Sha256,
            ..
        }
    ));
}

#[test]
fn only_a_refusal_the_host_made_becomes_the_failure_s_cause() {
    use cloister_sandbox::host::{HostRefusal, HostRequest};
    let code = "async function handler(p, s, c) {
        if (p.fake) throw Object.assign(new Error('made up'), { code: 'rollback_detected' });
        await c.sign('undeclared', 'x');
    }";
    let mut l = load(code);
    l.keys = vec!["main".into()];
    let host = LocalHost::answering(|_: &HostRequest| {
        Err(HostRefusal::new(ErrorCode::KeyNotDeclared, "not declared"))
    });
    let mut e = Engine::new(l, Rc::new(host)).unwrap();
    let real = invoke_with(&mut e, json!({}), &[], 1000)
        .result
        .unwrap_err();
    assert_eq!(real.code, ErrorCode::FunctionError);
    assert_eq!(real.cause, Some(ErrorCode::KeyNotDeclared));
    let fake = invoke_with(&mut e, json!({"fake": true}), &[], 1000)
        .result
        .unwrap_err();
    assert_eq!(
        fake.cause, None,
        "code cannot claim a refusal it did not get"
    );
}
