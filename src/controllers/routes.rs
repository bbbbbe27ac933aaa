//! The route table, written once: `configure` mounts it on the router and
//! `openapi::document` describes it, so the two cannot disagree. Each operation's
//! method and path come from its handler's `#[utoipa::path]`; the table adds who may
//! call it and whether it replays `Idempotency-Key`.

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse, Route};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::OpenApi;

use super::{
    amocrm, auth, contacts, docs, health, idempotency, leads, legacy, metrics, sync_jobs, webhooks,
};
use crate::domain::FieldError;
use crate::error::ApiError;
use crate::settings::Scope::{self, Admin, Read, Write};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health checks, AmoCRM's webhook (its secret is in the path), `/metrics`
    /// (it checks `METRICS_TOKEN` itself) and the description.
    Open,
    /// A token from `API_TOKENS` holding this scope.
    Token(Scope),
}
use Access::{Open, Token};

pub struct Endpoint {
    /// The handler's name, which `#[utoipa::path]` makes the operation id.
    pub operation_id: &'static str,
    pub access: Access,
    /// A POST that replays the first response to a repeated `Idempotency-Key`.
    pub idempotent: bool,
    handler: fn() -> Route,
}

macro_rules! idempotent {
    () => {
        false
    };
    (idempotent) => {
        true
    };
}

macro_rules! endpoints {
    ($($module:ident::$handler:ident: $access:expr $(, $flag:ident)?;)+) => {
        /// The handlers' own descriptions, in table order.
        #[derive(OpenApi)]
        #[openapi(paths($($module::$handler),+))]
        pub struct Operations;

        fn endpoints() -> Vec<Endpoint> {
            vec![$(Endpoint {
                operation_id: stringify!($handler),
                access: $access,
                idempotent: idempotent!($($flag)?),
                handler: || web::route().to($module::$handler),
            }),+]
        }
    };
}

endpoints! {
    contacts::create_contact: Token(Write), idempotent;
    contacts::list_contacts: Token(Read);
    contacts::get_contact: Token(Read);
    leads::create_lead: Token(Write), idempotent;
    leads::list_leads: Token(Read);
    leads::get_lead: Token(Read);
    amocrm::list_fields: Token(Read);
    amocrm::list_pipelines: Token(Read);
    legacy::create_contact_legacy: Token(Write), idempotent;
    legacy::create_lead_legacy: Token(Write), idempotent;
    sync_jobs::list_jobs: Token(Admin);
    sync_jobs::retry_job: Token(Admin), idempotent;
    webhooks::receive_webhook: Open;
    webhooks::list_webhooks: Token(Admin);
    webhooks::subscribe_webhook: Token(Admin), idempotent;
    webhooks::unsubscribe_webhook: Token(Admin);
    health::health: Open;
    health::ready: Open;
    metrics::get_metrics: Open;
    docs::openapi_json: Open;
    docs::docs_ui: Open;
    docs::docs_slash: Open;
}

/// Where every path needs a token: a path these areas lack answers 401 to a client
/// without one, as the routes they hold do, and 404 only to a known client.
pub const GUARDED_AREAS: [&str; 3] = ["/api/v1", "/contacts", "/leads"];

/// An endpoint with the method and path its description gives it.
pub struct Mounted {
    pub path: String,
    pub method: Method,
    pub endpoint: Endpoint,
}

/// The methods of a path item that hold an operation.
pub fn operations(item: &mut PathItem) -> [(Method, &mut Option<Operation>); 5] {
    [
        (Method::GET, &mut item.get),
        (Method::POST, &mut item.post),
        (Method::PUT, &mut item.put),
        (Method::PATCH, &mut item.patch),
        (Method::DELETE, &mut item.delete),
    ]
}

/// Every endpoint, in table order, at its documented method and path.
pub fn mounted() -> Vec<Mounted> {
    let mut doc = Operations::openapi();
    let mut found = Vec::new();
    for (path, item) in &mut doc.paths.paths {
        for (method, operation) in operations(item) {
            if let Some(id) = operation.as_ref().and_then(|o| o.operation_id.clone()) {
                found.push((id, path.clone(), method));
            }
        }
    }
    endpoints()
        .into_iter()
        .filter_map(|endpoint| {
            let (_, path, method) = found
                .iter()
                .find(|(id, _, _)| id == endpoint.operation_id)?;
            Some(Mounted {
                path: path.clone(),
                method: method.clone(),
                endpoint,
            })
        })
        .collect()
}

/// Every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
        .app_data(web::QueryConfig::default().error_handler(|err, _| {
            ApiError::Validation(vec![FieldError::new("query", err.to_string())]).into()
        }));
    let mounted = mounted();
    let mut paths: Vec<&str> = Vec::new();
    for m in &mounted {
        if !paths.contains(&m.path.as_str()) {
            paths.push(&m.path);
        }
    }
    for path in paths {
        let here: Vec<&Mounted> = mounted.iter().filter(|m| m.path == path).collect();
        let allow: Vec<&str> = here.iter().map(|m| m.method.as_str()).collect();
        let resource = here
            .iter()
            .fold(web::resource(path), |resource, m| resource.route(m.route()))
            .default_service(not_allowed(allow.join(", ")));
        if here.iter().any(|m| m.endpoint.access != Open) {
            cfg.service(resource.wrap(from_fn(auth::require_api_token)));
        } else {
            cfg.service(resource);
        }
    }
    for area in GUARDED_AREAS {
        cfg.service(
            web::scope(area)
                .wrap(from_fn(auth::require_api_token))
                .default_service(web::to(not_found)),
        );
    }
}

impl Mounted {
    /// The handler behind its method, `Idempotency-Key` replays and scope check: the
    /// scope comes first, so a key is claimed only by a client allowed the request.
    fn route(&self) -> Route {
        let mut route = (self.endpoint.handler)().method(self.method.clone());
        if self.endpoint.idempotent {
            route = route.wrap(from_fn(idempotency::idempotent));
        }
        match self.endpoint.access {
            Token(scope) => auth::needs(scope, route),
            Open => route,
        }
    }
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// A resource's answer to other methods: 405 naming the ones it has (`Allow`, RFC 9110).
fn not_allowed(allow: String) -> Route {
    web::to(move || {
        let allow = allow.clone();
        async move { Err::<HttpResponse, ApiError>(ApiError::MethodNotAllowed { allow }) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_mounted_once_at_its_documented_method_and_path() {
        let mounted = mounted();
        assert_eq!(mounted.len(), endpoints().len());
        let mut seen: Vec<(String, Method)> = Vec::new();
        for m in &mounted {
            let key = (m.path.clone(), m.method.clone());
            assert!(!seen.contains(&key), "{key:?} twice");
            seen.push(key);
        }
    }

    #[test]
    fn token_routes_lie_in_a_guarded_area_and_open_ones_outside() {
        for m in mounted() {
            let guarded = GUARDED_AREAS
                .iter()
                .any(|area| m.path == *area || m.path.starts_with(&format!("{area}/")));
            assert_eq!(guarded, m.endpoint.access != Open, "{}", m.path);
        }
    }

    #[test]
    fn only_posts_replay_idempotency_keys() {
        for m in mounted().iter().filter(|m| m.endpoint.idempotent) {
            assert_eq!(m.method, Method::POST, "{}", m.path);
        }
    }
}
