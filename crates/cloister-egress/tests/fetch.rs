//! Outbound requests against servers on loopback with a test CA: what goes through, what is
//! refused and with which code, what a secret's server sees and what the function sees.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use cloister_egress::testing::{Leaf, TestCa, TestServer};
use cloister_egress::{EgressLimits, FetchError, FunctionEgress, Session};
use cloister_types::ErrorCode;
use cloister_types::egress::{
    CheckedEgress, Egress, ExtraRoot, FetchRequest, FetchResponse, Redirect, SecretBinding,
};
use zeroize::Zeroizing;

const SECRET: &str = "sk_test_Z9q/8+v-4hJ2";

fn policy(allow: &[&str], ca: &[&TestCa], secrets: &[(&str, &str, &str)]) -> Arc<CheckedEgress> {
    let mut s: BTreeMap<String, Vec<SecretBinding>> = BTreeMap::new();
    for (name, origin, header) in secrets {
        s.entry(name.to_string()).or_default().push(SecretBinding {
            origin: origin.to_string(),
            path_prefix: None,
            header: header.to_string(),
        });
    }
    let names: Vec<&str> = secrets.iter().map(|(n, _, _)| *n).collect();
    Arc::new(
        Egress {
            allow: allow.iter().map(|a| a.to_string()).collect(),
            ca: ca
                .iter()
                .map(|c| ExtraRoot {
                    pem: c.pem().to_owned(),
                    origins: allow.iter().map(|a| a.to_string()).collect(),
                })
                .collect(),
            secrets: s,
        }
        .check(&names)
        .expect("policy"),
    )
}

fn client(p: Arc<CheckedEgress>, limits: EgressLimits) -> Arc<FunctionEgress> {
    Arc::new(FunctionEgress::new(p, limits).expect("client"))
}

fn session(f: &Arc<FunctionEgress>, secs: u64) -> Session {
    let values = f
        .policy()
        .secrets
        .keys()
        .map(|k| (k.clone(), Zeroizing::new(SECRET.as_bytes().to_vec())))
        .collect();
    f.session(
        values,
        tokio::time::Instant::now() + Duration::from_secs(secs),
    )
    .expect("session")
}

fn get(url: &str) -> FetchRequest {
    FetchRequest {
        url: url.into(),
        method: "GET".into(),
        headers: vec![],
        body: String::new(),
        redirect: Redirect::Follow,
    }
}

fn body(r: &FetchResponse) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(&r.body)
        .unwrap();
    String::from_utf8(b).unwrap()
}

fn code(r: Result<FetchResponse, FetchError>) -> ErrorCode {
    match r {
        Ok(r) => panic!("expected a refusal, got {} {}", r.status, body(&r)),
        Err(e) => e.code(),
    }
}

async fn https(ca: &TestCa, leaf: Leaf) -> TestServer {
    TestServer::https(ca.server_config(&leaf)).await
}

#[tokio::test]
async fn get_post_and_json_round_trip_over_verified_tls() {
    let ca = TestCa::new();
    let srv = https(&ca, Leaf::default()).await;
    let origin = format!("https://127.0.0.1:{}", srv.port());
    let f = client(
        policy(&[origin.as_str()], &[&ca], &[]),
        EgressLimits::default(),
    );
    let s = session(&f, 10);
    let r = s.fetch(get(&format!("{origin}/json"))).await.unwrap();
    assert_eq!((r.status, r.status_text.as_str()), (200, "OK"));
    assert_eq!(body(&r), r#"{"ok":true,"n":42}"#);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json")
    );
    let post = FetchRequest {
        url: format!("{origin}/echo?x=1"),
        method: "POST".into(),
        headers: vec![
            ("Content-Type".into(), "text/plain".into()),
            ("X-Trace".into(), "t1".into()),
        ],
        body: base64::engine::general_purpose::STANDARD.encode("hello"),
        redirect: Redirect::Follow,
    };
    let r = s.fetch(post).await.unwrap();
    let echo: serde_json::Value = serde_json::from_str(&body(&r)).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], "hello");
    assert_eq!(echo["headers"]["x-trace"], "t1");
    assert_eq!(echo["headers"]["user-agent"], "cloister-fetch");
    // Both requests went over one pooled connection; records say what was contacted.
    assert_eq!(srv.seen().connections, 1);
    let records = s.take_records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].path, "/echo", "no query in records");
    assert_eq!(records[1].status, Some(200));
    assert!(records[1].sent > 5 && records[1].received > 10);
}

#[tokio::test]
async fn the_test_ca_is_trusted_only_when_the_manifest_lists_it() {
    let ca = TestCa::new();
    let srv = https(&ca, Leaf::default()).await;
    let origin = format!("https://127.0.0.1:{}", srv.port());
    let f = client(
        policy(&[origin.as_str()], &[], &[]),
        EgressLimits::default(),
    );
    let e = session(&f, 10)
        .fetch(get(&format!("{origin}/json")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::EgressTlsFailed);
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // The server got no request (the handshake failed first).
    assert!(srv.seen().requests.is_empty());
}

#[tokio::test]
async fn expired_and_wrong_name_certificates_are_refused() {
    let ca = TestCa::new();
    for (leaf, why) in [
        (
            Leaf {
                expired: true,
                ..Leaf::default()
            },
            "expired",
        ),
        (
            Leaf {
                names: vec!["other.example".into()],
                expired: false,
            },
            "not valid for name",
        ),
    ] {
        let srv = https(&ca, leaf).await;
        let origin = format!("https://127.0.0.1:{}", srv.port());
        let f = client(
            policy(&[origin.as_str()], &[&ca], &[]),
            EgressLimits::default(),
        );
        let e = session(&f, 10)
            .fetch(get(&format!("{origin}/json")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::EgressTlsFailed);
        assert!(e.to_string().to_lowercase().contains(why), "{why}: {e}");
    }
}

#[tokio::test]
async fn origins_names_and_addresses_off_the_allowlist_are_refused() {
    let ca = TestCa::new();
    let srv = https(&ca, Leaf::default()).await;
    let port = srv.port();
    let by_address = format!("https://127.0.0.1:{port}");
    let by_name = format!("https://localhost:{port}");
    // Only the address is listed: another port, another scheme, the name are refused.
    let f = client(
        policy(&[by_address.as_str()], &[&ca], &[]),
        EgressLimits::default(),
    );
    let s = session(&f, 10);
    assert_eq!(
        code(
            s.fetch(get(&format!("https://127.0.0.1:{}/json", port + 1)))
                .await
        ),
        ErrorCode::EgressNotAllowed
    );
    assert_eq!(
        code(s.fetch(get(&format!("http://127.0.0.1:{port}/json"))).await),
        ErrorCode::EgressInsecure
    );
    assert_eq!(
        code(s.fetch(get(&format!("{by_name}/json"))).await),
        ErrorCode::EgressNotAllowed
    );
    assert_eq!(
        code(s.fetch(get("ftp://127.0.0.1/x")).await),
        ErrorCode::InvalidRequest
    );
    // Only the name is listed: it resolves to loopback, which is refused.
    let f = client(
        policy(&[by_name.as_str()], &[&ca], &[]),
        EgressLimits::default(),
    );
    let e = session(&f, 10)
        .fetch(get(&format!("{by_name}/json")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::EgressAddressRefused, "{e}");
    // The name and its address listed: allowed, verified against the name.
    let f = client(
        policy(&[by_name.as_str(), by_address.as_str()], &[&ca], &[]),
        EgressLimits::default(),
    );
    let r = session(&f, 10)
        .fetch(get(&format!("{by_name}/json")))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // https listed, http asked: insecure; http listed: plain text goes through.
    let plain = TestServer::http().await;
    let https_only = format!("https://127.0.0.1:{}", plain.port());
    let f = client(
        policy(&[https_only.as_str()], &[], &[]),
        EgressLimits::default(),
    );
    let e = session(&f, 10)
        .fetch(get(&format!("http://127.0.0.1:{}/json", plain.port())))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::EgressInsecure, "{e}");
    let f = client(
        policy(
            &[format!("http://127.0.0.1:{}", plain.port()).as_str()],
            &[],
            &[],
        ),
        EgressLimits::default(),
    );
    let r = session(&f, 10)
        .fetch(get(&format!("http://127.0.0.1:{}/json", plain.port())))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn redirects_are_followed_only_to_allowed_origins() {
    let ca = TestCa::new();
    let srv = https(&ca, Leaf::default()).await;
    let origin = format!("https://127.0.0.1:{}", srv.port());
    let f = client(
        policy(&[origin.as_str()], &[&ca], &[]),
        EgressLimits::default(),
    );
    let s = session(&f, 10);
    let to = |u: &str| {
        format!(
            "{origin}/redirect?to={}",
            url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>()
        )
    };
    let r = s.fetch(get(&to("/json"))).await.unwrap();
    assert!(r.redirected);
    assert_eq!(r.url, format!("{origin}/json"));
    assert_eq!(body(&r), r#"{"ok":true,"n":42}"#);
    let e = s
        .fetch(get(&to("https://127.0.0.1:1/json")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::EgressNotAllowed);
    assert!(e.to_string().contains("a redirect to"), "{e}");
    let mut manual = get(&to("/json"));
    manual.redirect = Redirect::Manual;
    let r = s.fetch(manual).await.unwrap();
    assert_eq!((r.status, r.redirected), (302, false));
    let mut error = get(&to("/json"));
    error.redirect = Redirect::Error;
    assert_eq!(code(s.fetch(error).await), ErrorCode::EgressFailed);
    // A loop ends after the limit.
    let looping = to(&to("/json"));
    let _ = s.fetch(get(&looping)).await.unwrap();
    let mut r = "/json".to_owned();
    for _ in 0..7 {
        r = to(&r);
    }
    assert_eq!(code(s.fetch(get(&r)).await), ErrorCode::EgressFailed);
}

#[tokio::test]
async fn an_egress_only_secret_reaches_its_server_and_never_the_function() {
    let ca = TestCa::new();
    let srv = https(&ca, Leaf::default()).await;
    let port = srv.port();
    let named = format!("https://localhost:{port}");
    let address = format!("https://127.0.0.1:{port}");
    let f = client(
        policy(
            &[named.as_str(), address.as_str()],
            &[&ca],
            &[("API_KEY", &named, "Authorization")],
        ),
        EgressLimits::default(),
    );
    let s = session(&f, 10);
    let reference = s.refs()["API_KEY"].clone();
    assert!(!reference.contains(SECRET));
    let with = |url: String, header: &str| FetchRequest {
        headers: vec![(header.into(), format!("Bearer {reference}"))],
        ..get(&url)
    };
    let r = s
        .fetch(with(
            format!("{named}/reflect?header=authorization"),
            "Authorization",
        ))
        .await
        .unwrap();
    // The server saw the value ...
    let seen = srv.seen();
    let (_, _, headers) = seen.requests.last().unwrap();
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == &format!("Bearer {SECRET}"))
    );
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "accept-encoding" && v == "identity")
    );
    // ... the function sees none of its echoes, in the body or the headers.
    let text = body(&r);
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("Bearer {SECRET}"));
    for leak in [SECRET, &b64[8..], "sk_test_Z9q%2F8%2Bv-4hJ2"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert!(text.contains("[redacted]"), "{text}");
    let reflected = r.headers.iter().find(|(k, _)| k == "x-reflected").unwrap();
    assert_eq!(reflected.1, "Bearer [redacted]");
    // Anywhere the manifest does not bind it: refused, nothing sent.
    let before = srv.seen().requests.len();
    for (req, why) in [
        (with(format!("{named}/echo"), "X-Api-Key"), "header"),
        (with(format!("{address}/echo"), "Authorization"), "origin"),
        (get(&format!("{named}/echo?k={reference}")), "URL"),
        (
            FetchRequest {
                method: "POST".into(),
                body: base64::engine::general_purpose::STANDARD.encode(&reference),
                ..get(&format!("{named}/echo"))
            },
            "body",
        ),
        (
            FetchRequest {
                headers: vec![(
                    "Authorization".into(),
                    "Bearer {{cloister-secret:00000000000000000000000000000000}}".into(),
                )],
                ..get(&format!("{named}/echo"))
            },
            "forged",
        ),
    ] {
        assert_eq!(
            code(s.fetch(req).await),
            ErrorCode::EgressSecretRefused,
            "{why}"
        );
    }
    assert_eq!(
        srv.seen().requests.len(),
        before,
        "nothing refused was sent"
    );
    // A redirect to another origin does not carry it.
    let hop = format!(
        "{named}/redirect?to={}",
        url::form_urlencoded::byte_serialize(format!("{address}/echo").as_bytes())
            .collect::<String>()
    );
    let r = s.fetch(with(hop, "Authorization")).await.unwrap();
    let echo: serde_json::Value = serde_json::from_str(&body(&r)).unwrap();
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert!(r.redirected);
}

#[tokio::test]
async fn limits_refuse_with_their_own_codes_and_the_client_stays_usable() {
    let ca = TestCa::new();
    let srv = https(&ca, Leaf::default()).await;
    let origin = format!("https://127.0.0.1:{}", srv.port());
    let limits = EgressLimits {
        max_requests: 4,
        max_response_bytes: 64 * 1024,
        max_request_bytes: 16 * 1024,
        ..EgressLimits::default()
    };
    let f = client(policy(&[origin.as_str()], &[&ca], &[]), limits);
    // A server that trickles its body: the invocation's deadline ends the request.
    let s = session(&f, 1);
    let started = std::time::Instant::now();
    assert_eq!(
        code(s.fetch(get(&format!("{origin}/slow"))).await),
        ErrorCode::EgressTimeout
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let s = session(&f, 10);
    assert_eq!(
        code(s.fetch(get(&format!("{origin}/big?bytes=100000"))).await),
        ErrorCode::EgressReceivedLimit
    );
    let big = FetchRequest {
        method: "POST".into(),
        body: base64::engine::general_purpose::STANDARD.encode(vec![b'y'; 20 * 1024]),
        ..get(&format!("{origin}/echo"))
    };
    assert_eq!(code(s.fetch(big).await), ErrorCode::EgressSentLimit);
    assert_eq!(
        s.fetch(get(&format!("{origin}/json")))
            .await
            .unwrap()
            .status,
        200
    );
    for _ in 0..2 {
        s.fetch(get(&format!("{origin}/json"))).await.unwrap();
    }
    assert_eq!(
        code(s.fetch(get(&format!("{origin}/json"))).await),
        ErrorCode::EgressRequestLimit
    );
    // The next invocation starts with fresh counts on the same client.
    let r = session(&f, 10)
        .fetch(get(&format!("{origin}/big?bytes=1000")))
        .await
        .unwrap();
    assert_eq!(body(&r).len(), 1000);
}

#[tokio::test]
async fn two_functions_share_no_connection() {
    let ca = TestCa::new();
    let srv = https(&ca, Leaf::default()).await;
    let origin = format!("https://127.0.0.1:{}", srv.port());
    let p = policy(&[origin.as_str()], &[&ca], &[]);
    let a = client(p.clone(), EgressLimits::default());
    let b = client(p, EgressLimits::default());
    for f in [&a, &b, &a, &b] {
        session(f, 10)
            .fetch(get(&format!("{origin}/json")))
            .await
            .unwrap();
    }
    assert_eq!(
        srv.seen().connections,
        2,
        "one pool per function, reused by each"
    );
}

#[tokio::test]
async fn an_extra_root_vouches_only_for_the_origins_it_names() {
    let ca = TestCa::new();
    let srv = https(&ca, Leaf::default()).await;
    let port = srv.port();
    let named = format!("https://localhost:{port}");
    let address = format!("https://127.0.0.1:{port}");
    let policy = Arc::new(
        Egress {
            allow: vec![named.clone(), address.clone()],
            ca: vec![ExtraRoot {
                pem: ca.pem().to_owned(),
                origins: vec![named.clone()],
            }],
            secrets: BTreeMap::new(),
        }
        .check(&[])
        .unwrap(),
    );
    let f = client(policy, EgressLimits::default());
    let s = session(&f, 10);
    assert_eq!(
        s.fetch(get(&format!("{named}/json"))).await.unwrap().status,
        200
    );
    let e = s.fetch(get(&format!("{address}/json"))).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::EgressTlsFailed, "{e}");
    // A root naming an origin off the allowlist is refused at the policy check.
    let off = Egress {
        allow: vec![named.clone()],
        ca: vec![ExtraRoot {
            pem: ca.pem().to_owned(),
            origins: vec!["https://other.example".into()],
        }],
        secrets: BTreeMap::new(),
    };
    assert!(off.check(&[]).is_err());
}
