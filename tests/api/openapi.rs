//! `/openapi.json` describes every route the app serves; `/docs` renders it offline.

use serde_json::{json, Value};

use crate::helpers::spawn_app;

async fn document() -> (crate::helpers::TestApp, Value) {
    let app = spawn_app().await;
    let res = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(res.status, 200);
    assert!(res.content_type.starts_with("application/json"));
    (app, res.body)
}

/// Every documented operation, as (method, path).
fn operations(doc: &Value) -> Vec<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

/// The router and the document are made from one table (`controllers::routes`); this
/// checks what the server really serves against what the document says.
#[tokio::test]
async fn the_openapi_document_is_3_1_and_every_operation_is_served() {
    let (app, doc) = document().await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi {version}");
    let operations = operations(&doc);
    assert!(operations.len() >= 20, "{operations:?}");
    for (method, path) in operations {
        let url = app.url(&path.replace("{id}", "1").replace("{secret}", "x"));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let res = app
            .client
            .request(method.clone(), url)
            .send()
            .await
            .expect("request");
        // 405 would mean the path exists without this method; 404 from a protected
        // route comes only after a token, which this request lacks.
        assert_ne!(res.status().as_u16(), 405, "{method} {path}");
        let protected = path.starts_with("/api/") || path.ends_with("/create");
        if protected {
            assert_eq!(res.status().as_u16(), 401, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn client_routes_need_the_bearer_scheme_and_errors_are_problem_json() {
    let (_app, doc) = document().await;
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    let explained = scheme["description"].as_str().unwrap_or_default();
    for scope in ["`write`", "`read`", "`admin`", "insufficient_scope"] {
        assert!(explained.contains(scope), "{scope} in {explained}");
    }
    let problem_ref = "#/components/schemas/ProblemDetails";
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        let protected = path.starts_with("/api/") || path.ends_with("/create");
        if protected {
            // Exactly one scope each (tests/api/scopes.rs checks it is the one enforced).
            let scopes = op["security"][0]["bearer"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                op["security"].as_array().map(Vec::len),
                Some(1),
                "{method} {path}"
            );
            assert!(
                scopes.len() == 1
                    && ["write", "read", "admin"].contains(&scopes[0].as_str().unwrap_or_default()),
                "{method} {path}: {scopes:?}"
            );
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path} lacks 401"
            );
        }
        let responses = op["responses"].as_object().expect("responses");
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"], problem_ref,
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn real_problem_bodies_have_only_documented_fields() {
    let (app, doc) = document().await;
    let properties = doc["components"]["schemas"]["ProblemDetails"]["properties"]
        .as_object()
        .expect("ProblemDetails properties")
        .clone();
    let invalid = app
        .post("/api/v1/contacts", &json!({"name": "Иван", "phone": "12"}))
        .await;
    assert_eq!(invalid.status, 422);
    let missing = app.get("/api/v1/contacts/424242").await;
    assert_eq!(missing.status, 404);
    for body in [invalid.body, missing.body] {
        for key in body.as_object().expect("problem object").keys() {
            assert!(properties.contains_key(key), "{key} is not documented");
        }
    }
}

#[tokio::test]
async fn the_docs_page_renders_the_document_without_loading_anything_else() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(res.status().as_u16(), 200);
    let csp = res
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = res.text().await.expect("html");
    assert!(html.contains(r#"fetch("openapi.json")"#));
    for outside in ["<script src", "<link", "http://", "https://", "@import"] {
        assert!(!html.contains(outside), "the page loads {outside}");
    }
}

#[tokio::test]
async fn the_docs_page_with_a_trailing_slash_redirects_to_the_page() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = client.get(app.url("/docs/")).send().await.expect("docs/");
    assert_eq!(res.status().as_u16(), 308);
    assert_eq!(
        res.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/docs")
    );
}

#[tokio::test]
async fn large_responses_are_gzipped_and_small_ones_sent_as_they_are() {
    let app = spawn_app().await;
    let get = |path: &str| {
        app.client
            .get(app.url(path))
            .header("accept-encoding", "gzip")
            .send()
    };
    let large = get("/openapi.json").await.expect("openapi");
    assert_eq!(large.status(), 200);
    assert_eq!(
        large
            .headers()
            .get("content-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let bytes = large.bytes().await.expect("body");
    assert_eq!(bytes.get(..2), Some(&[0x1f, 0x8b][..]), "gzip magic");

    let small = get("/health").await.expect("health");
    assert_eq!(small.status(), 200);
    assert!(
        small.headers().get("content-encoding").is_none(),
        "{:?}",
        small.headers().get("content-encoding")
    );
    let body: Value = small.json().await.expect("plain JSON");
    assert!(body.is_object());
}
