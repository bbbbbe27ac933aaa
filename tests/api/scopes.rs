//! Token scopes: every client route needs the scope `/openapi.json` names for it, a
//! token lacking it gets `403 insufficient_scope`, and tokens written without scopes
//! may only write.

use serde_json::{json, Value};

use crate::helpers::TestApp;

const SCOPES: [&str; 3] = ["write", "read", "admin"];
/// `name:scopes:token`; each token holds exactly the scopes its name says.
const TOKENS: [(&str, &str, &str); 7] = [
    ("only-write", "write", "token-only-write-0123456789"),
    ("only-read", "read", "token-only-read-01234567890"),
    ("only-admin", "admin", "token-only-admin-0123456789"),
    ("no-write", "read+admin", "token-no-write-012345678901"),
    ("no-read", "write+admin", "token-no-read-0123456789012"),
    ("no-admin", "write+read", "token-no-admin-012345678901"),
    ("legacy", "", "token-legacy-form-0123456789"),
];

fn token(name: &str) -> &'static str {
    TOKENS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, t)| *t)
        .unwrap_or_default()
}

async fn spawn_with_scoped_tokens() -> TestApp {
    let entries: Vec<String> = TOKENS
        .iter()
        .map(|(name, scopes, token)| match *scopes {
            "" => format!("{name}:{token}"),
            scopes => format!("{name}:{scopes}:{token}"),
        })
        .collect();
    TestApp::builder()
        .env(|env| {
            env.insert("API_TOKENS".into(), entries.join(","));
        })
        .spawn()
        .await
}

/// Every operation that names a bearer scope, with the scope it names.
fn scoped_operations(doc: &Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            let needed = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|req| req["bearer"].as_array())
                .flatten()
                .filter_map(Value::as_str)
                .next();
            if let Some(scope) = needed {
                found.push((method.clone(), path.clone(), scope.to_owned()));
            }
        }
    }
    found
}

async fn call(app: &TestApp, method: &str, path: &str, token: &str) -> crate::helpers::Reply {
    let path = path.replace("{id}", "1");
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    app.send(
        app.client
            .request(method, app.url(&path))
            .bearer_auth(token)
            .json(&json!({})),
    )
    .await
}

#[tokio::test]
async fn each_route_needs_the_scope_its_description_names() {
    let app = spawn_with_scoped_tokens().await;
    let doc = app
        .send(app.client.get(app.url("/openapi.json")))
        .await
        .body;
    let operations = scoped_operations(&doc);
    assert_eq!(operations.len(), 15, "{operations:?}");
    for (method, path, scope) in &operations {
        assert!(SCOPES.contains(&scope.as_str()), "{method} {path}: {scope}");
        assert!(
            doc["paths"][path][method]["responses"]["403"].is_object(),
            "{method} {path} documents no 403"
        );
        let refused = call(&app, method, path, token(&format!("no-{scope}"))).await;
        assert_eq!(
            refused.status, 403,
            "{method} {path} without {scope}: {}",
            refused.body
        );
        assert_eq!(refused.problem_code(), "insufficient_scope");
        assert!(
            refused.body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(scope.as_str()),
            "{}",
            refused.body
        );
        let allowed = call(&app, method, path, token(&format!("only-{scope}"))).await;
        assert!(
            ![401, 403].contains(&allowed.status),
            "{method} {path} with only {scope}: {} {}",
            allowed.status,
            allowed.body
        );
    }
}

#[tokio::test]
async fn a_token_without_scopes_may_post_records_but_not_read_or_administer() {
    let app = spawn_with_scoped_tokens().await;
    let legacy = token("legacy");
    let body = json!({"name": "Иван Петров", "phone": "+79161234567"});
    let created = app
        .send(
            app.client
                .post(app.url("/api/v1/contacts"))
                .bearer_auth(legacy)
                .json(&body),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let dropin = app
        .send(
            app.client
                .post(app.url("/leads/create"))
                .bearer_auth(legacy)
                .json(&json!({"name": "Заказ", "contact": body})),
        )
        .await;
    assert_eq!(dropin.status, 201, "{}", dropin.body);
    for path in [
        "/api/v1/contacts",
        "/api/v1/contacts/1",
        "/api/v1/leads?name=x",
        "/api/v1/sync/jobs",
        "/api/v1/amocrm/webhooks",
    ] {
        let res = app
            .client
            .get(app.url(path))
            .bearer_auth(legacy)
            .send()
            .await
            .expect("reply");
        assert_eq!(res.status().as_u16(), 403, "{path}");
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            challenge.starts_with(r#"Bearer error="insufficient_scope""#),
            "{path}: {challenge}"
        );
    }
    let unsubscribe = call(&app, "delete", "/api/v1/amocrm/webhooks", legacy).await;
    assert_eq!(unsubscribe.status, 403);
}

#[tokio::test]
async fn a_refused_request_does_not_claim_its_idempotency_key() {
    let app = spawn_with_scoped_tokens().await;
    let refused = app
        .send(
            app.client
                .post(app.url("/api/v1/contacts"))
                .bearer_auth(token("only-read"))
                .header("Idempotency-Key", "scope-test-1")
                .json(&json!({"name": "Иван", "phone": "+79161234567"})),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(app.count("idempotency_keys"), 0);
    assert_eq!(app.count("contacts"), 0);
}

#[tokio::test]
async fn the_webhook_list_shows_only_amosyncs_own_hook_masked() {
    let app = spawn_with_scoped_tokens().await;
    let foreign = "https://other-integration.example/hook?key=foreign-key-0123456789";
    app.register_foreign_hook(foreign).await;
    let admin = token("only-admin");

    let listed = call(&app, "get", "/api/v1/amocrm/webhooks", admin).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body, json!({"subscribed": false, "webhooks": []}));

    let subscribed = call(&app, "post", "/api/v1/amocrm/webhooks", admin).await;
    assert_eq!(subscribed.status, 201, "{}", subscribed.body);
    let listed = call(&app, "get", "/api/v1/amocrm/webhooks", admin).await;
    assert_eq!(listed.body["subscribed"], true);
    let hooks = listed.body["webhooks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(hooks.len(), 1, "{}", listed.body);
    assert_eq!(
        hooks[0]["destination"],
        "http://127.0.0.1:9/webhooks/amocrm/***"
    );
    assert!(
        !listed.body.to_string().contains("foreign-key"),
        "{}",
        listed.body
    );
}
