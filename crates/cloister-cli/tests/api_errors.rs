//! Every error code this platform can produce today, over real HTTP, with its status.

mod common;

use bytes::Bytes;
use cloister_types::wire::{DeployRequest, TokenCreateRequest};
use cloister_types::{ApiError, Role};
use common::{Platform, assert_api_error, workload};
use hyper::Method;
use serde_json::json;

fn deploy_req(name: &str, code: &str) -> DeployRequest {
    DeployRequest::javascript(name, code)
}

fn body_error(r: &cloister_client::RawResponse) -> ApiError {
    ApiError::from_body(&r.body)
        .unwrap_or_else(|| panic!("not an error body: {:?}", String::from_utf8_lossy(&r.body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_invalid_request() {
    let p = Platform::start().await;
    let mut c = p.admin();
    p.deploy("add", "add.js", None).await;
    for (path, body) in [
        ("/v1/functions", "{not json"),
        ("/v1/functions", "[]"),
        ("/v1/functions", r#"{"name":"x","runtime":"javascript"}"#),
        (
            "/v1/functions",
            r#"{"name":"x","runtime":"javascript","code":"1","surprise":true}"#,
        ),
        ("/v1/functions/add/invoke", "{\"params\": "),
        (
            "/v1/functions/add/invoke",
            r#"{"params":{},"version":"one"}"#,
        ),
    ] {
        let r = c
            .raw(Method::POST, path, Some(Bytes::from(body)))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{path} {body}");
        let e = body_error(&r);
        assert_eq!(e.code.as_str(), "invalid_request", "{path} {body}: {e:?}");
        assert!(!e.message.is_empty());
    }
    // Bad names, runtimes, limits and query strings.
    assert_api_error(
        c.deploy(&deploy_req("Bad Name!", "function handler(){}"))
            .await,
        "invalid_request",
        400,
    );
    let mut py = deploy_req("py", "def handler(): pass");
    py.runtime = "python".into();
    let e = assert_api_error(c.deploy(&py).await, "invalid_request", 400);
    assert!(e.message.contains("python"), "{}", e.message);
    let mut slow = deploy_req("slow", &workload("add.js"));
    slow.limits = Some(serde_json::from_value(json!({"timeoutMs": 10_000_000})).unwrap());
    assert_api_error(c.deploy(&slow).await, "invalid_request", 400);
    let r = c
        .raw(Method::GET, "/v1/functions/add?version=abc", None)
        .await
        .unwrap();
    assert_eq!(
        (r.status, body_error(&r).code.as_str()),
        (400, "invalid_request")
    );
    // Declared secrets are validated and stored.
    let mut bad_secret = deploy_req("sec", &workload("add.js"));
    bad_secret.required_secrets = vec!["../etc/passwd".into()];
    assert_api_error(c.deploy(&bad_secret).await, "invalid_secret_path", 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_is_compiled_before_it_is_accepted() {
    let p = Platform::start().await;
    let mut c = p.admin();
    let e = assert_api_error(
        c.deploy(&deploy_req(
            "broken",
            "// ok\nfunction handler(params) {\n  return {a: };\n}\n",
        ))
        .await,
        "invalid_code",
        400,
    );
    assert_eq!(e.details["line"], 3, "details name the line: {e:?}");
    assert!(
        e.message.contains("line 3"),
        "message names the line: {}",
        e.message
    );
    let e = assert_api_error(
        c.deploy(&deploy_req("noentry", "function main() { return 1; }"))
            .await,
        "invalid_code",
        400,
    );
    assert!(e.message.contains("handler"), "{}", e.message);
    let mut custom = deploy_req("custom", "function main() { return 7; }");
    custom.entrypoint = Some("main".into());
    c.deploy(&custom).await.unwrap();
    let r = c.invoke("custom", "null", None).await.unwrap();
    assert_eq!(r.result.get(), "7");
    // Rejected deploys store nothing.
    assert_api_error(c.show("broken", None).await, "function_not_found", 404);
    let names: Vec<_> = c
        .list()
        .await
        .unwrap()
        .functions
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, vec!["custom"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_roles_are_enforced() {
    let p = Platform::start().await;
    p.deploy("add", "add.js", None).await;
    let mut admin = p.admin();

    // No token, a malformed header, an unknown token.
    let mut anon = p.client(None);
    let e = assert_api_error(anon.list().await, "unauthorized", 401);
    assert!(e.message.contains("Bearer"), "{}", e.message);
    assert_api_error(anon.invoke("add", "{}", None).await, "unauthorized", 401);
    assert_api_error(anon.metrics().await, "unauthorized", 401);
    assert_api_error(
        p.client(Some("clt_wrong")).list().await,
        "unauthorized",
        401,
    );
    // Unauthenticated endpoints stay open.
    assert_eq!(anon.health().await.unwrap(), json!({"status": "ok"}));
    assert_eq!(
        anon.raw(Method::GET, "/v1/openapi.json", None)
            .await
            .unwrap()
            .status,
        200
    );

    let inv = admin
        .create_token(&TokenCreateRequest {
            role: Role::Invoker,
            label: Some("ci".into()),
            identity: None,
            functions: vec![],
        })
        .await
        .unwrap();
    let dev_identity = p.developer_identity("dev").await;
    let dev = p
        .token(
            cloister_types::Role::Developer,
            Some(dev_identity.id().to_string()),
        )
        .await;
    assert!(inv.token.starts_with("clt_") && inv.token.len() > 40);
    let mut invoker = p.client(Some(&inv.token));
    let mut developer = p
        .client(Some(&dev.token))
        .with_identity(dev_identity.clone(), None);

    // Invoker: may invoke and read, may not deploy, delete or manage tokens.
    assert_eq!(
        invoker
            .invoke("add", r#"{"a":1,"b":2}"#, None)
            .await
            .unwrap()
            .result
            .get(),
        r#"{"sum":3}"#
    );
    invoker.show("add", None).await.unwrap();
    let e = assert_api_error(
        invoker.deploy(&deploy_req("x", &workload("add.js"))).await,
        "forbidden",
        403,
    );
    assert!(e.message.contains("developer"), "{}", e.message);
    assert!(
        e.message.contains("this token has the invoker role"),
        "{}",
        e.message
    );
    assert_api_error(invoker.delete("add").await, "forbidden", 403);
    assert_api_error(invoker.list_tokens().await, "forbidden", 403);

    // Developer: may deploy and delete, may not create tokens.
    developer
        .deploy(&deploy_req("dev-fn", &workload("add.js")))
        .await
        .unwrap();
    assert_api_error(
        developer
            .create_token(&TokenCreateRequest {
                role: Role::Admin,
                label: None,
                identity: None,
                functions: vec![],
            })
            .await,
        "forbidden",
        403,
    );
    developer.delete("dev-fn").await.unwrap();

    // Tokens are listed without values; revocation takes effect at once.
    let listed = admin.list_tokens().await.unwrap();
    assert_eq!(listed.tokens.len(), 3);
    let raw = admin.raw(Method::GET, "/v1/tokens", None).await.unwrap();
    assert!(
        !String::from_utf8_lossy(&raw.body).contains(&inv.token),
        "token values must never be listed"
    );
    admin.revoke_token(&inv.info.id).await.unwrap();
    assert_api_error(invoker.invoke("add", "{}", None).await, "unauthorized", 401);
    assert_api_error(admin.revoke_token(&inv.info.id).await, "not_found", 404);

    // Creation and revocation are in the audit log (by id, role and label; never the value).
    let audit = admin
        .raw(Method::GET, "/v1/audit?limit=1000", None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&audit.body).into_owned();
    let log: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = log["entries"].as_array().unwrap();
    let find = |action: &str, subject: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["subject"] == subject)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} of {subject}: {text}"))
    };
    let created = find("token.create", &inv.info.id);
    assert!(
        created["details"].to_string().contains("invoker")
            && created["details"].to_string().contains("ci"),
        "{created}"
    );
    find("token.create", &dev.info.id);
    find("token.revoke", &inv.info.id);
    for t in [&inv.token, &dev.token] {
        assert!(
            !text.contains(t.as_str()),
            "a token value is in the audit log"
        );
    }
    // `audit list` lines its columns up: every row's action starts under ACTION.
    let out = p.cli(&["audit", "list", "--limit", "1000"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let col = header.find("ACTION").unwrap();
    let mut rows = 0;
    for l in lines {
        let action = &l[col..];
        assert!(
            l.as_bytes()[col - 1] == b' '
                && action.split(' ').next().is_some_and(|a| {
                    a.contains('.')
                        && a.chars()
                            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
                }),
            "misaligned: {l:?}\n{table}"
        );
        rows += 1;
    }
    assert!(rows >= 4, "{table}");

    // Tokens are stored hashed: no value appears anywhere in the database files.
    let mut checked = 0;
    for entry in std::fs::read_dir(p.data()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "admin.token") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for t in [&inv.token, &dev.token, &p.token] {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "a token value is stored in {path:?}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "database files were checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_functions_versions_and_routes_are_not_found() {
    let p = Platform::start().await;
    let mut c = p.admin();
    let e = assert_api_error(
        c.invoke("ghost", "{}", None).await,
        "function_not_found",
        404,
    );
    assert!(e.message.contains("ghost"));
    assert_api_error(c.show("ghost", None).await, "function_not_found", 404);
    assert_api_error(c.delete("ghost").await, "function_not_found", 404);
    p.deploy("add", "add.js", None).await;
    assert_api_error(
        c.invoke("add", "{}", Some(2)).await,
        "function_not_found",
        404,
    );
    assert_api_error(c.show("add", Some(9)).await, "function_not_found", 404);
    let r = c.raw(Method::GET, "/v1/nothing", None).await.unwrap();
    assert_eq!((r.status, body_error(&r).code.as_str()), (404, "not_found"));
    let r = c.raw(Method::PUT, "/v1/functions", None).await.unwrap();
    assert_eq!(
        (r.status, body_error(&r).code.as_str()),
        (405, "method_not_allowed")
    );
    // Deleted means gone, for invocation too.
    c.delete("add").await.unwrap();
    assert_api_error(
        c.invoke("add", r#"{"a":1,"b":1}"#, None).await,
        "function_not_found",
        404,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_details_generic_tools_rely_on() {
    let p = Platform::start().await;
    p.deploy("add", "add.js", None).await;
    let mut anon = p.client(None);

    // Authentication comes before anything about the path, and a 401 names the scheme.
    for (method, path) in [
        (Method::POST, "/v1/secrets/function-x/prod/KEY"),
        (Method::POST, "/v1/secrets/function-x/prod/KEY:rotate"),
        (Method::GET, "/v1/functions/ghost"),
        (Method::GET, "/v1/functions"),
    ] {
        let r = anon
            .raw(method.clone(), path, Some(Bytes::from_static(b"{}")))
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(body_error(&r).code.as_str(), "unauthorized");
        assert_eq!(
            r.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"cloister\""),
            "{method} {path}"
        );
    }
    // Other errors carry no challenge.
    let mut c = p.admin();
    let r = c
        .raw(Method::GET, "/v1/functions/ghost", None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.headers.get("www-authenticate").is_none());

    // The scheme name is case-insensitive (RFC 9110 §11.1).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("{scheme} {}", p.token);
        let r = anon
            .raw_with_headers(
                Method::GET,
                "/v1/functions",
                None,
                &[("authorization", &auth)],
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{scheme}");
    }
    let auth = format!("Basic {}", p.token);
    let r = anon
        .raw_with_headers(
            Method::GET,
            "/v1/functions",
            None,
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);

    // Query values are percent-decoded: version=%31 is version=1.
    let r = c
        .raw(Method::GET, "/v1/functions/add?version=%31", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = c
        .raw(Method::GET, "/v1/audit?after=%30&limit=%32", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = c
        .raw(Method::GET, "/v1/functions/add?version=%32", None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    // A JSON integer written as 1.0 is the integer 1 (JSON Schema); 1.5 is not.
    let r = c
        .raw(
            Method::POST,
            "/v1/functions/add/invoke",
            Some(Bytes::from_static(
                br#"{"params":{"a":1,"b":2},"version":1.0}"#,
            )),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = c
        .raw(
            Method::POST,
            "/v1/functions/add/invoke",
            Some(Bytes::from_static(br#"{"params":{},"version":1.5}"#)),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, body_error(&r).code.as_str()),
        (400, "invalid_request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_and_method_in_the_openapi_document_is_routed() {
    let p = Platform::start().await;
    let f = p.deploy("add", "add.js", None).await;
    let mut c = p.admin();
    let token = p.token(cloister_types::Role::Invoker, None).await;
    let doc: serde_json::Value = serde_json::from_str(cloister_gateway::openapi::DOCUMENT).unwrap();
    let secret = format!("function-{}/prod/api/KEY", f.function_id);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                continue; // path-level `parameters`, `summary`...
            }
            let m: Method = method.to_uppercase().parse().unwrap();
            let concrete = path
                .replace("{name}", "add")
                .replace("{id}", &token.info.id)
                .replace(
                    "{path}",
                    &if m == Method::POST {
                        format!("{secret}:rotate")
                    } else {
                        secret.clone()
                    },
                );
            let r = c
                .raw(m.clone(), &concrete, Some(Bytes::from_static(b"{}")))
                .await
                .unwrap();
            // The router's own 404 and 405 mean the document names what the server lacks; a
            // 404 about a missing function or secret comes from a handler.
            let code = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|b| b["error"]["code"].as_str().map(str::to_owned));
            assert!(
                !(r.status == 404 && code.as_deref() == Some("not_found")) && r.status != 405,
                "{method} {concrete}: HTTP {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked} operations");
    // The check can fail: an undocumented path gets the router's answer.
    let r = c.raw(Method::GET, "/v1/nothing", None).await.unwrap();
    assert_eq!((r.status, body_error(&r).code.as_str()), (404, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoker_token_scoped_to_functions_invokes_only_those() {
    let p = Platform::start().await;
    p.deploy("add", "add.js", None).await;
    p.deploy("other", "add.js", None).await;
    let mut admin = p.admin();
    let scoped = admin
        .create_token(&TokenCreateRequest {
            role: Role::Invoker,
            label: Some("ci".into()),
            identity: None,
            functions: vec!["add".into()],
        })
        .await
        .unwrap();
    assert_eq!(scoped.info.functions, vec!["add".to_owned()]);
    let mut c = p.client(Some(&scoped.token));
    c.invoke("add", r#"{"a":1,"b":2}"#, None).await.unwrap();
    let e = assert_api_error(c.invoke("other", "{}", None).await, "forbidden", 403);
    assert!(e.message.contains("only add"), "{}", e.message);
    assert_api_error(c.signed_manifest("other", None).await, "forbidden", 403);
    assert!(c.signed_manifest("add", None).await.is_ok());
    // Nor does it see the others' metadata.
    let names: Vec<String> = c
        .list()
        .await
        .unwrap()
        .functions
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, vec!["add".to_owned()]);
    assert_api_error(c.show("other", None).await, "forbidden", 403);
    assert_api_error(c.versions("other").await, "forbidden", 403);
    assert!(c.show("add", None).await.is_ok());
    // The scope is listed (and audited), and only invoker tokens take one.
    let listed = admin.list_tokens().await.unwrap();
    assert!(
        listed
            .tokens
            .iter()
            .any(|t| t.id == scoped.info.id && t.functions == vec!["add".to_owned()])
    );
    for (role, functions) in [
        (Role::Developer, vec!["add".to_owned()]),
        (Role::Invoker, vec!["Not_A_Name".to_owned()]),
    ] {
        assert_api_error(
            admin
                .create_token(&TokenCreateRequest {
                    role,
                    label: None,
                    identity: None,
                    functions,
                })
                .await,
            "invalid_request",
            400,
        );
    }
    // Through the CLI.
    let o = p.cli(&[
        "--json",
        "token",
        "create",
        "--role",
        "invoker",
        "--function",
        "other",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["functions"], json!(["other"]), "{v}");
    let audit = String::from_utf8_lossy(&p.cli(&["audit", "list"]).stdout).into_owned();
    assert!(audit.contains("\"functions\":[\"add\"]"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payloads_are_refused() {
    let p = Platform::start().await;
    let mut c = p.admin();
    p.deploy("add", "add.js", None).await;
    // Code over the 1 MiB maximum.
    let big = format!(
        "function handler() {{ return 1; }}\n//{}",
        "x".repeat(1 << 20)
    );
    let e = assert_api_error(
        c.deploy(&deploy_req("big", &big)).await,
        "payload_too_large",
        413,
    );
    assert_eq!(e.details["limitBytes"], 1 << 20);
    // Params over the 1 MiB input maximum, and a body far beyond any limit.
    let params = format!("\"{}\"", "y".repeat((1 << 20) + 10));
    assert_api_error(
        c.invoke("add", &params, None).await,
        "payload_too_large",
        413,
    );
    let huge = Bytes::from(vec![b' '; 8 << 20]);
    let r = c
        .raw(Method::POST, "/v1/functions", Some(huge))
        .await
        .unwrap();
    assert_eq!(
        (r.status, body_error(&r).code.as_str()),
        (413, "payload_too_large")
    );
    // Output over the limit is the function's failure.
    let mut fat = deploy_req(
        "fat",
        "function handler() { return 'z'.repeat(2 * 1024 * 1024); }",
    );
    fat.limits = Some(serde_json::from_value(json!({"memoryMb": 128})).unwrap());
    c.deploy(&fat).await.unwrap();
    assert_api_error(
        c.invoke("fat", "{}", None).await,
        "function_invalid_output",
        422,
    );
    // Not JSON-serialisable output.
    c.deploy(&deploy_req("bigint", "function handler() { return 10n; }"))
        .await
        .unwrap();
    assert_api_error(
        c.invoke("bigint", "{}", None).await,
        "function_invalid_output",
        422,
    );
    // The platform is still healthy afterwards.
    assert_eq!(
        c.invoke("add", r#"{"a":2,"b":3}"#, None)
            .await
            .unwrap()
            .result
            .get(),
        r#"{"sum":5}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thrown_errors_carry_message_stack_and_logs() {
    let p = Platform::start().await;
    let mut c = p.admin();
    let code = "function handler(p, s, context) {\n  context.log('before');\n  throw new TypeError('bad ' + p.x);\n}";
    c.deploy(&deploy_req("thrower", code)).await.unwrap();
    let e = assert_api_error(
        c.invoke("thrower", r#"{"x":"input"}"#, None).await,
        "function_error",
        422,
    );
    assert!(
        e.message.contains("TypeError") && e.message.contains("bad input"),
        "{}",
        e.message
    );
    assert!(
        e.details["stack"]
            .as_str()
            .unwrap()
            .contains("function.js:3"),
        "{:?}",
        e.details
    );
    assert_eq!(e.details["logs"], json!(["before"]));
    assert!(e.details["executionId"].is_string());
}

/// Limits at the door (#12 point 5), on one platform with small limits. Misbehaving clients
/// come from their own loopback addresses (127.0.0.x) so each limit is seen alone.
mod limits {
    use std::net::{IpAddr, SocketAddr};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    use super::*;

    const FLAGS: &[&str] = &[
        "--rate-limit-per-token",
        "20",
        "--auth-failures-per-minute",
        "10",
        "--max-connections",
        "24",
        "--max-connections-per-address",
        "8",
        "--header-timeout-ms",
        "1000",
        "--body-timeout-ms",
        "1000",
    ];

    fn addr(p: &Platform) -> SocketAddr {
        p.url.trim_start_matches("http://").parse().unwrap()
    }

    /// A connection from source address `from`.
    async fn connect(p: &Platform, from: &str) -> TcpStream {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
            .unwrap();
        s.connect(addr(p)).await.unwrap()
    }

    /// Status, lower-cased headers and body of one response read until the connection closes.
    async fn exchange(tcp: &mut TcpStream, request: &str) -> (u16, Vec<(String, String)>, String) {
        tcp.write_all(request.as_bytes()).await.unwrap();
        read_response(tcp).await
    }

    async fn read_response(tcp: &mut TcpStream) -> (u16, Vec<(String, String)>, String) {
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn get(path: &str, token: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        )
    }

    /// `/healthz` from the well-behaved address answers quickly.
    async fn healthz_is_fast(p: &Platform) {
        let started = Instant::now();
        let mut tcp = connect(p, "127.0.0.1").await;
        let (status, _, _) = exchange(
            &mut tcp,
            "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200);
        // Generous for a loaded CI machine; the p99 is measured with wrk (PERFORMANCE.md).
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "/healthz took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_door_has_a_limit_and_healthz_stays_fast() {
        let p = Platform::start_with(FLAGS).await;

        // Per-token rate: a burst of 40 then 20/s; 80 at once must see 429 + Retry-After,
        // however the header pads the token (one token, one budget).
        let mut limited = None;
        for i in 0..80 {
            let mut tcp = connect(&p, "127.0.0.2").await;
            let token = format!("{}{}", " ".repeat(i % 3), p.token);
            let (status, h, body) = exchange(&mut tcp, &get("/v1/functions", &token)).await;
            if status == 429 {
                limited = Some((h, body));
                break;
            }
            assert_eq!(status, 200, "{body}");
        }
        let (h, body) = limited.expect("80 requests at once were never limited");
        let retry: u64 = header(&h, "retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
        let e = ApiError::from_body(body.as_bytes()).unwrap();
        assert_eq!(e.code.as_str(), "rate_limited");
        assert_eq!(e.details["budget"], "token");
        healthz_is_fast(&p).await;
        tokio::time::sleep(Duration::from_secs(3)).await; // the token's budget refills

        // Failed authentications: 401 until the address's budget (5 at once) is spent, then
        // 429 for that address, even for a valid token that has not authenticated yet; a
        // token that did (someone else behind the same address) keeps working, and other
        // addresses are unaffected.
        let fresh = p.token(cloister_types::Role::Invoker, None).await.token;
        let mut statuses = Vec::new();
        for _ in 0..12 {
            let mut tcp = connect(&p, "127.0.0.3").await;
            statuses.push(
                exchange(&mut tcp, &get("/v1/functions", "clt_wrong"))
                    .await
                    .0,
            );
        }
        assert!(statuses[..5].iter().all(|&s| s == 401), "{statuses:?}");
        assert!(statuses[6..].iter().all(|&s| s == 429), "{statuses:?}");
        let mut tcp = connect(&p, "127.0.0.3").await;
        let (status, h, body) = exchange(&mut tcp, &get("/v1/functions", &fresh)).await;
        assert_eq!(status, 429, "{body}");
        assert!(header(&h, "retry-after").is_some());
        assert_eq!(
            ApiError::from_body(body.as_bytes()).unwrap().details["budget"],
            "authFailures"
        );
        let mut tcp = connect(&p, "127.0.0.3").await;
        assert_eq!(
            exchange(&mut tcp, &get("/v1/functions", &p.token)).await.0,
            200,
            "a token that authenticated recently is not locked out by others' failures"
        );
        let mut tcp = connect(&p, "127.0.0.4").await;
        assert_eq!(
            exchange(&mut tcp, &get("/v1/functions", &p.token)).await.0,
            200
        );
        healthz_is_fast(&p).await;

        // Header read timeout: half a request is dropped after the deadline.
        let mut slow = connect(&p, "127.0.0.5").await;
        slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("the gateway waited more than 5 s for headers")
            .unwrap_or(0);
        assert_eq!(n, 0, "expected the connection closed");
        assert!(started.elapsed() >= Duration::from_millis(800));

        // Body read timeout: a body that stops arriving gets 408 request_timeout.
        let mut tcp = connect(&p, "127.0.0.6").await;
        let head = format!(
            "POST /v1/functions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{{\"name\"",
            p.token
        );
        let (status, _, body) = exchange(&mut tcp, &head).await;
        assert_eq!(status, 408, "{body}");
        assert_eq!(
            ApiError::from_body(body.as_bytes()).unwrap().code.as_str(),
            "request_timeout"
        );

        // A client that sends requests but never reads the answers loses its connection once
        // a response has waited the body deadline (1 s) to be read.
        let mut tcp = connect(&p, "127.0.0.12").await;
        let (_, _, one) = exchange(
            &mut tcp,
            "GET /v1/openapi.json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        let mut reader = connect(&p, "127.0.0.12").await;
        let pipelined = "GET /v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n".repeat(300);
        reader.write_all(pipelined.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut got)).await;
        assert!(
            got.len() < 300 * one.len(),
            "all {} responses were kept for a client that did not read ({} bytes)",
            300,
            got.len()
        );

        // Connection caps: 8 per address (the 9th gets 429), 24 in all (then 503); a
        // well-behaved address still gets through while one address holds its 8.
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(connect(&p, "127.0.0.7").await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut ninth = connect(&p, "127.0.0.7").await;
        let (status, h, body) = read_response(&mut ninth).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(header(&h, "retry-after"), Some("1"));
        healthz_is_fast(&p).await;
        for last in 8..=10 {
            for _ in 0..8 {
                held.push(connect(&p, &format!("127.0.0.{last}")).await);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut over = connect(&p, "127.0.0.11").await;
        let (status, h, body) = read_response(&mut over).await;
        assert_eq!(status, 503, "{body}");
        assert!(header(&h, "retry-after").is_some());
        assert_eq!(
            ApiError::from_body(body.as_bytes()).unwrap().code.as_str(),
            "unavailable"
        );
        drop(held);
        // The places come back: idle connections close and requests are served again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        healthz_is_fast(&p).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn default_limits_do_not_throttle_a_benchmark_of_one_token() {
        // As `cloister bench` loads a server: 32 keep-alive clients sharing one token.
        let p = Platform::start().await;
        p.deploy("add", "add.js", None).await;
        let mut clients = Vec::new();
        for _ in 0..32 {
            let (url, token) = (p.url.clone(), p.token.clone());
            clients.push(tokio::spawn(async move {
                let mut c = cloister_client::Client::new(&url, Some(token)).unwrap();
                let mut refused = 0;
                for _ in 0..40 {
                    match c.invoke("add", r#"{"a":1,"b":2}"#, None).await {
                        Ok(_) => {}
                        Err(e) => {
                            assert!(e.to_string().contains("rate_limited"), "{e}");
                            refused += 1;
                        }
                    }
                }
                refused
            }));
        }
        let mut refused = 0;
        for c in clients {
            refused += c.await.unwrap();
        }
        assert_eq!(
            refused, 0,
            "default limits refused {refused} of 1280 benchmark calls"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_lengths_are_capped_with_a_clear_400() {
        let p = Platform::start().await;
        let mut c = p.admin();
        let mut req = deploy_req("many", "function handler() { return 1; }");
        req.required_secrets = (0..=cloister_types::MAX_DECLARED_SECRETS)
            .map(|i| format!("S{i}"))
            .collect();
        let e = assert_api_error(c.deploy(&req).await, "invalid_request", 400);
        assert_eq!(e.details["max"], cloister_types::MAX_DECLARED_SECRETS);
        // The 150 000-entry list of the report is refused as quickly, before any entry is
        // parsed, and the gateway keeps answering.
        // (Sent unsigned and raw: the CLI's signed manifest would make the body too large.)
        req.required_secrets = (0..150_000).map(|i| format!("S{i}")).collect();
        let body = Bytes::from(serde_json::to_vec(&req).unwrap());
        let r = c
            .raw(Method::POST, "/v1/functions", Some(body))
            .await
            .unwrap();
        assert_eq!(
            (r.status, body_error(&r).code.as_str()),
            (400, "invalid_request")
        );
        // While one client keeps sending such bodies on four connections, /healthz answers
        // promptly: large bodies are decoded off the async workers, a few at a time.
        let body = Bytes::from(serde_json::to_vec(&req).unwrap());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut flood = Vec::new();
        for _ in 0..4 {
            let (url, token, body, stop) =
                (p.url.clone(), p.token.clone(), body.clone(), stop.clone());
            flood.push(tokio::spawn(async move {
                let mut c = cloister_client::Client::new(&url, Some(token)).unwrap();
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c
                        .raw(Method::POST, "/v1/functions", Some(body.clone()))
                        .await
                        .unwrap();
                    assert_eq!(r.status, 400);
                    sent += 1;
                }
                sent
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut samples = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let mut tcp = connect(&p, "127.0.0.1").await;
            let (status, _, _) = exchange(
                &mut tcp,
                "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .await;
            assert_eq!(status, 200);
            samples.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut sent = 0;
        for f in flood {
            sent += f.await.unwrap();
        }
        assert!(sent >= 4, "the flood did not run ({sent} bodies)");
        samples.sort();
        let (median, slowest) = (samples[samples.len() / 2], samples[samples.len() - 1]);
        // Measured here: median 0.4-0.7 ms with large bodies decoded off the async workers,
        // 31-35 ms when they are decoded on them; wrk's p99 during such a flood is ~8 ms.
        assert!(
            median < Duration::from_millis(10) && slowest < Duration::from_millis(500),
            "/healthz during the flood: median {median:?}, slowest {slowest:?}"
        );
        req.required_secrets = vec!["A".into(), "db/A".into()];
        assert_api_error(c.deploy(&req).await, "invalid_secret_path", 400);
        req.required_secrets = (0..cloister_types::MAX_DECLARED_SECRETS)
            .map(|i| format!("S{i}"))
            .collect();
        c.deploy(&req)
            .await
            .expect("the maximum itself is accepted");
    }
}
