//! Every error code this platform can produce today, over real HTTP, with its status.

mod common;

use bytes::Bytes;
use cloister_types::wire::{DeployRequest, TokenCreateRequest};
use cloister_types::{ApiError, Role};
use common::{Platform, assert_api_error, workload};
use hyper::Method;
use serde_json::json;

fn deploy_req(name: &str, code: &str) -> DeployRequest {
    DeployRequest {
        name: name.into(),
        runtime: "javascript".into(),
        code: code.into(),
        entrypoint: None,
        environment: None,
        required_secrets: vec![],
        limits: None,
        manifest: None,
    }
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
        })
        .await
        .unwrap();
    let dev_identity = p.developer_identity("dev").await;
    let dev = admin
        .create_token(&TokenCreateRequest {
            role: Role::Developer,
            label: None,
            identity: Some(dev_identity.id().to_string()),
        })
        .await
        .unwrap();
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
