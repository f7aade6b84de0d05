//! `GET /openapi.json` describes every endpoint, and what the endpoints answer is documented.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::harness::*;

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().unwrap_or("").to_string());
                }
                refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_covers_every_endpoint_describes_every_response_and_its_refs_resolve()
{
    let app = spawn_app().await;
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "offboard");
    // For .ci/run, which checks it with a real OpenAPI 3.1 validator (openapi-spec-validator).
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let mut served = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                served.insert(format!("{} {path}", method.to_uppercase()));
                // OpenAPI requires operationIds to be unique across the document.
                if let Some(id) = op["operationId"].as_str() {
                    assert!(
                        operation_ids.insert(id.to_string()),
                        "{method} {path}: operationId {id} is not unique"
                    );
                }
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    !responses.is_empty(),
                    "{method} {path} documents no response"
                );
                // OpenAPI 3.1 requires a description on every response object.
                for (status, r) in responses {
                    assert!(
                        r["description"].as_str().is_some_and(|d| !d.is_empty()),
                        "{method} {path} {status} has no description"
                    );
                }
                if path.starts_with("/admin") {
                    assert!(
                        op["security"].to_string().contains("admin_token"),
                        "{method} {path} lacks security"
                    );
                }
            }
        }
    }
    let expected: BTreeSet<String> = [
        "POST /webhooks/{source}",
        "GET /admin/v1/actions",
        "POST /admin/v1/actions",
        "GET /admin/v1/actions/{id}",
        "POST /admin/v1/actions/{id}/approve",
        "POST /admin/v1/actions/{id}/retry",
        "POST /admin/v1/actions/{id}/cancel",
        "POST /admin/v1/brake/release",
        "POST /admin/v1/reconciliations",
        "GET /admin/v1/reconciliations/{id}",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(served, expected);
    // Every kind's authentication headers are described on the webhook endpoint.
    let webhook = &doc["paths"]["/webhooks/{source}"]["post"];
    let params: Vec<&str> = webhook["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for header in [
        "webhook-signature",
        "Authorization",
        "X-BambooHR-Signature",
        "X-BambooHR-Timestamp",
        "Bob-Signature",
        "X-Gusto-Signature",
        "x-deel-signature",
        "x-factorial-wh-challenge",
        "ce-specversion",
    ] {
        assert!(params.contains(&header), "{header} is not described");
    }
    for media in [
        "application/json",
        "application/x-www-form-urlencoded",
        "application/cloudevents+json",
    ] {
        assert!(
            webhook["requestBody"]["content"].get(media).is_some(),
            "{media}"
        );
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} does not resolve"
        );
    }
    for schema in [
        "ActionView",
        "ErrorBody",
        "DeliveryAnswer",
        "StandardDelivery",
        "AuditEntry",
        "ReconciliationView",
        "ReconciliationCreated",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} missing"
        );
    }
}

#[tokio::test]
async fn every_answer_the_endpoints_give_is_a_documented_status() {
    let app = spawn_app().await;
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented = |method: &str, path: &str, status: u16| {
        doc["paths"][path][method]["responses"]
            .get(status.to_string())
            .is_some()
    };
    let id = app.terminate(Some("E-1043"), None).await;
    app.wait_for_status(&id, "succeeded").await;
    let checks: Vec<(&str, &str, u16)> = vec![
        (
            "post",
            "/webhooks/{source}",
            app.post_delivery("[]").await.status.as_u16(),
        ),
        (
            "post",
            "/webhooks/{source}",
            app.post_delivery(&termination(Some("E-3001"), None))
                .await
                .status
                .as_u16(),
        ),
        (
            "get",
            "/admin/v1/actions",
            app.admin_get("/admin/v1/actions").await.status.as_u16(),
        ),
        (
            "get",
            "/admin/v1/actions",
            app.admin_get("/admin/v1/actions?limit=0")
                .await
                .status
                .as_u16(),
        ),
        (
            "get",
            "/admin/v1/actions/{id}",
            app.admin_get(&format!("/admin/v1/actions/{id}"))
                .await
                .status
                .as_u16(),
        ),
        (
            "post",
            "/admin/v1/actions/{id}/retry",
            app.admin_post_raw(
                &format!("/admin/v1/actions/{id}/retry"),
                Some(ADMIN_TOKEN),
                "",
            )
            .await
            .status
            .as_u16(),
        ),
        (
            "post",
            "/admin/v1/actions/{id}/cancel",
            app.admin_post_raw("/admin/v1/actions/act_x/cancel", None, "")
                .await
                .status
                .as_u16(),
        ),
        (
            "post",
            "/admin/v1/brake/release",
            app.admin_post_raw("/admin/v1/brake/release", Some(ADMIN_TOKEN), "")
                .await
                .status
                .as_u16(),
        ),
        (
            "get",
            "/readyz",
            app.http
                .get(format!("{}/readyz", app.base))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        ),
    ];
    for (method, path, status) in checks {
        assert!(
            documented(method, path, status),
            "{method} {path} answered {status}, which is not documented"
        );
    }
}
