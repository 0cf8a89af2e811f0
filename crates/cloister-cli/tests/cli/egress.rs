//! `fetch` from a deployed function, end to end: the CLI's egress flags, the owner-signed
//! policy keyvault registers, the executor's TLS to a loopback server with a test CA, and an
//! egress-only secret the code cannot read.

use cloister_egress::testing::{Leaf, TestCa, TestServer};
use serde_json::{Value, json};

use crate::common::Platform;

const SECRET: &str = "sk_e2e_Q7/wz+Kp-93x";

const CODE: &str = r#"
async function handler(p, secrets, context) {
    if (p.op === "json") {
        const r = await fetch(p.url);
        return { status: r.status, ok: r.ok, ct: r.headers.get("Content-Type"), body: await r.json() };
    }
    if (p.op === "post") {
        const r = await fetch(p.url, { method: "POST", headers: [["content-type", "application/json"]],
                                       body: JSON.stringify({ a: 1 }) });
        return await r.json();
    }
    if (p.op === "reflect") {
        const r = await fetch(p.url, { headers: { Authorization: "Bearer " + secrets.ref("API_KEY") } });
        const text = await r.text();
        context.log("server said", text, r.headers.get("x-reflected"));
        return { text, header: r.headers.get("x-reflected"), visible: Object.keys(secrets),
                 direct: secrets.API_KEY === undefined, plain: secrets.PLAIN };
    }
    if (p.op === "leak") {
        try {
            await fetch(p.url, { headers: { "X-Other": secrets.ref("API_KEY") } });
            return "sent";
        } catch (e) {
            return { code: e.code, message: e.message };
        }
    }
    if (p.op === "many") {
        let n = 0;
        try {
            for (;;) { await fetch(p.url); n++; }
        } catch (e) {
            return { n, code: e.code };
        }
    }
    await fetch(p.url);
    return "unreachable";
}
"#;

fn invoke(p: &Platform, name: &str, params: Value) -> Value {
    let o = p.cli(&[
        "--json",
        "fn",
        "invoke",
        name,
        "--params",
        &params.to_string(),
    ]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_fetches_over_tls_and_uses_a_secret_it_cannot_read() {
    let p = Platform::start().await;
    let ca = TestCa::new();
    let srv = TestServer::https(ca.server_config(&Leaf::default())).await;
    let port = srv.port();
    let named = format!("https://localhost:{port}");
    let address = format!("https://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let file = dir.path().join("caller.js");
    std::fs::write(&file, CODE).unwrap();
    let binding = format!("API_KEY={named}:Authorization");
    let o = p.cli(&[
        "fn",
        "deploy",
        file.to_str().unwrap(),
        "--secret",
        "PLAIN",
        "--egress",
        &named,
        "--egress",
        &address,
        "--egress-ca",
        &format!("{named}={}", ca_file.display()),
        "--egress-ca",
        &format!("{address}={}", ca_file.display()),
        "--egress-secret",
        &binding,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (name, value) in [("API_KEY", SECRET), ("PLAIN", "plain-value")] {
        let o = p.cli_stdin(
            &[
                "secret",
                "put",
                name,
                "--function",
                "caller",
                "--from-stdin",
            ],
            value.as_bytes(),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The policy is in the owner-signed manifest.
    let signed = p.admin().signed_manifest("caller", None).await.unwrap();
    let bytes = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&signed.manifest)
            .unwrap()
    };
    let m = cloister_authority::request::inspect::<cloister_authority::Manifest>(&bytes)
        .unwrap()
        .body;
    let policy = m.egress.expect("egress policy");
    assert_eq!(policy.allow, vec![named.clone(), address.clone()]);
    assert_eq!(policy.ca.len(), 2);
    assert_eq!(policy.ca[0].pem, ca.pem());
    assert_eq!(policy.ca[0].origins, vec![named.clone()]);
    assert_eq!(policy.ca[1].origins, vec![address.clone()]);
    assert_eq!(policy.secrets["API_KEY"][0].header, "Authorization");
    assert!(
        m.secrets.contains(&"API_KEY".to_owned()),
        "declared: {:?}",
        m.secrets
    );

    let r = invoke(
        &p,
        "caller",
        json!({"op": "json", "url": format!("{named}/json")}),
    );
    assert_eq!(
        r["result"],
        json!({"status": 200, "ok": true, "ct": "application/json", "body": {"ok": true, "n": 42}}),
        "{r}"
    );
    let logs = r["logs"].to_string();
    assert!(
        logs.contains(&format!("[fetch] GET {named}/json -> 200")),
        "{logs}"
    );
    let r = invoke(
        &p,
        "caller",
        json!({"op": "post", "url": format!("{address}/echo")}),
    );
    assert_eq!(r["result"]["method"], "POST");
    assert_eq!(r["result"]["body"], r#"{"a":1}"#);

    // The receipt lists the origins contacted, under the executor's signature.
    p.executor_holds_keys().await;
    let receipt = dir.path().join("receipt.json");
    let params = json!({"op": "json", "url": format!("{named}/json")}).to_string();
    let o = p.cli(&[
        "fn",
        "invoke",
        "caller",
        "--params",
        &params,
        "--receipt",
        receipt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = p.cli(&["--json", "receipt", "verify", receipt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    let egress = &v["body"]["egress"];
    assert_eq!(egress[0]["origin"], named.as_str(), "{v}");
    assert_eq!(egress[0]["requests"], 1, "{v}");
    assert!(egress[0]["bytesReceived"].as_u64().unwrap() > 18, "{v}");
    // Counting fewer requests than were made breaks the signature.
    let mut saved: Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    saved["receipt"]["body"]["egress"][0]["requests"] = 0.into();
    std::fs::write(&receipt, serde_json::to_vec(&saved).unwrap()).unwrap();
    let o = p.cli(&["receipt", "verify", receipt.to_str().unwrap()]);
    assert!(!o.status.success());

    // The egress-only secret: the server gets it, the code never sees it.
    let r = invoke(
        &p,
        "caller",
        json!({"op": "reflect", "url": format!("{named}/reflect")}),
    );
    let (_, _, headers) = srv.seen().requests.last().cloned().unwrap();
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == &format!("Bearer {SECRET}"))
    );
    assert_eq!(r["result"]["visible"], json!(["PLAIN"]), "{r}");
    assert_eq!(r["result"]["direct"], true);
    assert_eq!(r["result"]["plain"], "plain-value");
    assert_eq!(r["result"]["header"], "Bearer [redacted]");
    let whole = r.to_string();
    assert!(
        !whole.contains(SECRET) && !whole.contains("sk_e2e_Q7%2Fwz%2BKp"),
        "{whole}"
    );
    assert!(whole.contains("[redacted]"));

    // Placed anywhere else: refused with its code, catchable.
    let r = invoke(
        &p,
        "caller",
        json!({"op": "leak", "url": format!("{named}/echo")}),
    );
    assert_eq!(r["result"]["code"], "egress_secret_refused", "{r}");
    // Uncaught: 422 function_error with the cause in details.code.
    let r = invoke(
        &p,
        "caller",
        json!({"op": "raw", "url": "https://example.invalid/"}),
    );
    assert_eq!(r["error"]["code"], "function_error", "{r}");
    assert_eq!(r["error"]["details"]["code"], "egress_not_allowed", "{r}");
    let logs = r["error"]["details"]["logs"].to_string();
    assert!(
        logs.contains("[fetch] GET https://example.invalid/ -> egress_not_allowed"),
        "{r}"
    );
    let r = invoke(
        &p,
        "caller",
        json!({"op": "raw", "url": format!("http://127.0.0.1:{port}/json")}),
    );
    assert_eq!(r["error"]["details"]["code"], "egress_insecure", "{r}");
    // The request limit, then the function still works.
    let r = invoke(
        &p,
        "caller",
        json!({"op": "many", "url": format!("{address}/json")}),
    );
    assert_eq!(
        r["result"],
        json!({"n": 50, "code": "egress_request_limit"}),
        "{r}"
    );
    let r = invoke(
        &p,
        "caller",
        json!({"op": "json", "url": format!("{address}/json")}),
    );
    assert_eq!(r["result"]["status"], 200, "{r}");

    // Metrics count requests and bytes per function and origin (admins only).
    let metrics = p.admin().metrics().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("cloister_egress_requests_total{") && l.contains(&address))
        .unwrap_or_else(|| panic!("no egress series for {address}: {metrics}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 52, "{line}");
    assert!(
        metrics.contains("cloister_egress_received_bytes_total{"),
        "{metrics}"
    );

    // A function whose manifest lists no origin has no `fetch` at all (nothing ambient).
    let plain = dir.path().join("offline.js");
    std::fs::write(&plain, CODE).unwrap();
    let o = p.cli(&["fn", "deploy", plain.to_str().unwrap()]);
    assert!(o.status.success());
    let r = invoke(
        &p,
        "offline",
        json!({"op": "raw", "url": format!("{address}/json")}),
    );
    assert_eq!(r["error"]["code"], "function_error", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fetch is not defined"),
        "{r}"
    );

    // The secret's value is in no log and no database file.
    assert!(!p.log().contains(SECRET));
    for entry in walk(&p.data()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            memchr_find(&bytes, SECRET.as_bytes()).is_none(),
            "{} holds the secret",
            entry.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_refuses_a_policy_that_cannot_hold() {
    let p = Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.js");
    std::fs::write(&file, CODE).unwrap();
    let f = file.to_str().unwrap();
    for (args, why) in [
        (vec!["--egress", "api.example.com"], "not a URL"),
        (vec!["--egress", "https://*.com"], "two labels"),
        (vec!["--egress", "https://api.example.com/v1"], "no path"),
        (
            vec![
                "--egress",
                "https://api.example.com",
                "--egress-secret",
                "K=https://other.example.com:Authorization",
            ],
            "not on the egress allowlist",
        ),
        (
            vec![
                "--egress",
                "http://api.example.com",
                "--egress-secret",
                "K=http://api.example.com:Authorization",
            ],
            "HTTPS only",
        ),
        (vec!["--egress-secret", "K"], "need at least one --egress"),
        (
            vec![
                "--egress",
                "https://a.example.com",
                "--egress",
                "https://b.example.com",
                "--egress-ca",
                "/nonexistent/ca.pem",
            ],
            "say which one",
        ),
    ] {
        let mut all = vec!["fn", "deploy", f];
        all.extend(args.iter().copied());
        let o = p.cli(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(why), "{args:?}: {err}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_cannot_read_a_secret_a_newer_one_made_egress_only() {
    let p = Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("downgrade.js");
    std::fs::write(
        &file,
        "function handler(p, secrets) { return { key: secrets.API_KEY === undefined ? null : secrets.API_KEY }; }",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let o = p.cli(&["fn", "deploy", f, "--secret", "API_KEY"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = p.cli_stdin(
        &[
            "secret",
            "put",
            "API_KEY",
            "--function",
            "downgrade",
            "--from-stdin",
        ],
        SECRET.as_bytes(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v1 = |p: &Platform| {
        let o = p.cli(&["--json", "fn", "invoke", "downgrade", "--version", "1"]);
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    assert_eq!(
        v1(&p)["result"]["key"],
        SECRET,
        "version 1 declares it readable"
    );
    // Version 2 makes it egress-only; version 1 stays active, and a gateway may run it.
    let o = p.cli(&[
        "fn",
        "deploy",
        f,
        "--egress",
        "https://api.example.com",
        "--egress-secret",
        "API_KEY=https://api.example.com:Authorization",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = v1(&p);
    assert_eq!(r["version"], 1, "{r}");
    assert_eq!(r["result"]["key"], Value::Null, "{r}");
}
