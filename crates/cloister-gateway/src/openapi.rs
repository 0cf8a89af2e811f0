//! The OpenAPI 3.1 description of the public API, served at `/v1/openapi.json`.

/// The document (kept in `openapi.json` next to this crate's manifest).
pub const DOCUMENT: &str = include_str!("../openapi.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_json_and_lists_every_route_and_code() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        // Relative: whatever address the server listens on, the document names it.
        assert_eq!(doc["servers"][0]["url"], "/");
        for path in [
            "/healthz",
            "/metrics",
            "/v1/openapi.json",
            "/v1/functions",
            "/v1/functions/{name}",
            "/v1/functions/{name}/invoke",
            "/v1/tokens",
            "/v1/tokens/{id}",
            "/v1/attestation",
            "/v1/secrets",
            "/v1/secrets/{path}",
            "/v1/keyvault/rotate-dek",
            "/v1/keyvault/rotate-mek",
            "/v1/audit",
            "/v1/audit/verify",
            "/v1/identities",
            "/v1/activations",
            "/v1/registry",
        ] {
            assert!(
                doc["paths"][path].is_object(),
                "{path} missing from openapi.json"
            );
        }
        let codes = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
            ["enum"];
        for code in cloister_types::ErrorCode::ALL {
            assert!(
                codes.as_array().unwrap().iter().any(|c| c == code.as_str()),
                "{code} missing from openapi.json"
            );
        }
        let deploy = &doc["components"]["schemas"]["DeployRequest"]["properties"];
        assert!(
            deploy["manifest"].is_object(),
            "deploys document their manifest"
        );
    }
}
