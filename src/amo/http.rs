//! `HttpAmoTransport`: the reqwest implementation of `AmoTransport` for AmoCRM API v4.
//!
//! It owns the quirks AmoCRM is known for: 204 as "nothing found", `next` links that
//! lead to a 204, non-JSON 429/403 bodies, and `query` hits that are not real matches.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method};
use serde::de::DeserializeOwned;
use url::Url;

mod matching;
mod scrub;
mod status;

use self::matching::{match_created, phone_value_matches};
use self::status::{map_status, Answer};
use super::access::{AccessGuard, AmoAccess};
use super::limiter::RateLimiter;
use super::tokens::{StaticToken, TokenSource};
use super::wire::{self, ListPage};
use super::{
    AmoContact, AmoError, AmoLead, AmoPage, AmoTransport, AmoWebhook, CreatedWithContact,
    NewAmoContact, NewAmoLead, MAX_IDS_PER_READ,
};
use crate::domain::{Phone, Region};
use crate::redact::Redactor;

/// AmoCRM's maximum page size: fewer requests against a 7 req/s budget.
const PAGE_LIMIT: &str = "250";
/// 20 × 250 rows is far beyond any honest match; the cap stops a runaway walk, which
/// AmoCRM itself flags as suspicious behaviour.
const MAX_PAGES: u32 = 20;

pub struct AmoClientConfig {
    pub base_url: Url,
    pub access_token: String,
    pub region: Region,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// AmoCRM calls allowed in any one-second window (0: unlimited).
    pub max_rps: u32,
    /// While AmoCRM refuses access (401/402/403), one probe call this often.
    pub access_probe: Duration,
}

impl fmt::Debug for AmoClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmoClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("access_token", &"[redacted]")
            .field("region", &self.region)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_rps", &self.max_rps)
            .field("access_probe", &self.access_probe)
            .finish()
    }
}

pub struct HttpAmoTransport {
    config: AmoClientConfig,
    client: Client,
    /// Every request, paging and creates alike (and token refreshes), passes through it.
    limiter: Arc<RateLimiter>,
    /// Where the bearer comes from: a long-lived token, or refreshed OAuth tokens.
    tokens: Arc<dyn TokenSource>,
    /// Holds calls back while AmoCRM refuses the account or token.
    access: AccessGuard,
    /// Masks the service's secrets in what AmoCRM's errors say.
    redactor: Redactor,
    logger: slog::Logger,
}

impl fmt::Debug for HttpAmoTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAmoTransport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpAmoTransport {
    pub fn new(config: AmoClientConfig) -> Result<Self, AmoError> {
        if config.base_url.cannot_be_a_base()
            || !matches!(config.base_url.scheme(), "http" | "https")
        {
            return Err(AmoError::Network(format!(
                "AmoCRM base URL `{}` is not an http(s) URL",
                config.base_url
            )));
        }
        // Checked once here, so a token that cannot be a header fails at start-up.
        bearer_header(&config.access_token)?;
        let client = Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("amosync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            // A redirect would replay POSTs as GETs or drop the token on another host;
            // surfacing it as an error is clearer.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                AmoError::Network(format!(
                    "could not build the HTTP client: {}",
                    error_chain(&e)
                ))
            })?;
        Ok(HttpAmoTransport {
            limiter: Arc::new(RateLimiter::per_second(config.max_rps)),
            tokens: Arc::new(StaticToken(config.access_token.clone())),
            access: AccessGuard::new(config.access_probe),
            redactor: Redactor::new([&config.access_token]),
            logger: slog::Logger::root(slog::Discard, slog::o!()),
            config,
            client,
        })
    }

    /// Uses `tokens` (OAuth) instead of the long-lived token of the config.
    pub fn with_tokens(mut self, tokens: Arc<dyn TokenSource>) -> Self {
        self.tokens = tokens;
        self
    }

    /// The limiter every AmoCRM call shares (token refreshes take their turn too).
    pub fn limiter(&self) -> Arc<RateLimiter> {
        Arc::clone(&self.limiter)
    }

    /// The HTTP client, for the token endpoint.
    pub fn http_client(&self) -> Client {
        self.client.clone()
    }

    /// Masks these secrets (see `Redactor::from_settings`) in every error's text.
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Logs the moments AmoCRM access is lost through `logger`.
    pub fn with_logger(mut self, logger: slog::Logger) -> Self {
        self.logger = logger;
        self
    }

    fn url(&self, path: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.config.base_url.clone();
        // Checked in `new`: the base can carry a path, so this cannot fail.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
        }
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// One request; `Ok(None)` is AmoCRM's 204 "nothing found".
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, AmoError> {
        if let Err(refused) = self.access.check() {
            // A new authorisation (`amosync auth exchange`) ends a token refusal at
            // once, instead of at the next probe.
            let revived =
                matches!(refused, AmoError::Unauthorized) && self.tokens.reauthorised().await;
            if !revived {
                return Err(refused);
            }
            self.access.record(&Ok(()));
        }
        // An error's text is stored, logged and shown to clients from here on.
        let outcome = self
            .send(method, url, body)
            .await
            .map_err(|e| e.redacted(&self.redactor));
        if self.access.record(&outcome) {
            // One line when access is lost, not one per held-back call.
            slog::error!(self.logger, "AmoCRM refused access; holding calls back";
                "amo.error" => outcome.as_ref().err().map(AmoError::kind).unwrap_or_default(),
                "probe_every_secs" => self.config.access_probe.as_secs());
        }
        outcome
    }

    /// Sends with the current bearer; after a 401, once more with a refreshed one.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, AmoError> {
        let bearer = self.tokens.bearer().await?;
        let first = self
            .send_once(method.clone(), url.clone(), body.clone(), &bearer)
            .await;
        if let Err(AmoError::Unauthorized) = first {
            if let Some(newer) = self.tokens.after_unauthorized(&bearer).await? {
                return self.send_once(method, url, body, &newer).await;
            }
        }
        first
    }

    async fn send_once(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        bearer: &str,
    ) -> Result<Option<Vec<u8>>, AmoError> {
        let queued = std::time::Instant::now();
        self.limiter.acquire().await;
        crate::metrics::limiter_wait(queued.elapsed());
        let what = format!("{method} {}", url.path());
        let mut request = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, bearer_header(bearer)?)
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        // Timed after the limiter, so the histogram shows AmoCRM's latency, not our queue.
        let started = std::time::Instant::now();
        let response = request.send().await;
        crate::metrics::amo_call(
            &what,
            response.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed(),
        );
        let response = response.map_err(|e| transport_error(&what, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.bytes().await {
            Ok(bytes) => bytes.to_vec(),
            Err(e) if (200..300).contains(&status) => return Err(transport_error(&what, e)),
            // The status already says what went wrong; a lost error body changes nothing.
            Err(_) => Vec::new(),
        };
        let answer = map_status(status, retry_after.as_deref(), &body);
        if let Err(AmoError::RateLimited { retry_after }) = &answer {
            // Over the limit anyway (another integration on the account, or another
            // instance): everyone waits, instead of earning a block.
            self.limiter
                .pause_for(retry_after.unwrap_or(Duration::from_secs(1)));
        }
        match answer? {
            Answer::Content => Ok(Some(body)),
            Answer::NoContent => Ok(None),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<Option<T>, AmoError> {
        match self.call(Method::GET, url, None).await? {
            Some(body) => decode(&body).map(Some),
            None => Ok(None),
        }
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: &impl serde::Serialize,
    ) -> Result<T, AmoError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| AmoError::InvalidResponse(format!("could not encode request: {e}")))?;
        match self.call(method, url, Some(body)).await? {
            Some(body) => decode(&body),
            None => Err(AmoError::InvalidResponse(
                "204 No Content where an object was expected".into(),
            )),
        }
    }

    /// Walks `page=1,2,…` until a 204, an empty page, no `next` link, or `MAX_PAGES`.
    /// Page numbers are counted here rather than following `next` hrefs, so the
    /// token is only ever sent to the configured host.
    async fn pages<E, T>(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
        items: impl Fn(E) -> Vec<T>,
    ) -> Result<Vec<T>, AmoError>
    where
        E: DeserializeOwned + Default,
    {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let page = page.to_string();
            let mut params = query.to_vec();
            params.extend([("limit", PAGE_LIMIT), ("page", page.as_str())]);
            let Some(list) = self
                .get_json::<ListPage<E>>(self.url(path, &params))
                .await?
            else {
                break;
            };
            let more = list.has_next();
            let found = items(list.embedded);
            if found.is_empty() {
                break;
            }
            all.extend(found);
            if !more {
                break;
            }
        }
        Ok(all)
    }

    /// One page of `filter[updated_at][from]=since`, oldest change first; 204 is an empty last page.
    async fn changed_page<E, T>(
        &self,
        path: &[&str],
        since: i64,
        page: u32,
        extra: &[(&str, &str)],
        items: impl Fn(E) -> Vec<T>,
    ) -> Result<AmoPage<T>, AmoError>
    where
        E: DeserializeOwned + Default,
    {
        let (since, page) = (since.to_string(), page.max(1).to_string());
        let mut query = vec![
            ("filter[updated_at][from]", since.as_str()),
            ("order[updated_at]", "asc"),
            ("limit", PAGE_LIMIT),
            ("page", page.as_str()),
        ];
        query.extend_from_slice(extra);
        match self.get_json::<ListPage<E>>(self.url(path, &query)).await? {
            None => Ok(AmoPage {
                items: Vec::new(),
                more: false,
            }),
            Some(list) => {
                let more = list.has_next();
                let found = items(list.embedded);
                Ok(AmoPage {
                    more: more && !found.is_empty(),
                    items: found,
                })
            }
        }
    }

    /// Every record of `path` with one of `ids`, `MAX_IDS_PER_READ` per request; a
    /// 204 is "none of them".
    async fn by_ids<E, T>(
        &self,
        path: &[&str],
        ids: &[i64],
        extra: &[(&str, &str)],
        items: impl Fn(E) -> Vec<T>,
    ) -> Result<Vec<T>, AmoError>
    where
        E: DeserializeOwned + Default,
    {
        let mut found = Vec::new();
        for chunk in ids.chunks(MAX_IDS_PER_READ) {
            let ids: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let mut query: Vec<(&str, &str)> =
                ids.iter().map(|id| ("filter[id][]", id.as_str())).collect();
            query.push(("limit", PAGE_LIMIT));
            query.extend_from_slice(extra);
            if let Some(list) = self.get_json::<ListPage<E>>(self.url(path, &query)).await? {
                found.extend(items(list.embedded));
            }
        }
        Ok(found)
    }

    /// `POST /api/v4/{contacts|leads}` with `body` (items with request ids `"0"`, `"1"`, …).
    async fn create_batch(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        count: usize,
    ) -> Result<Vec<Option<i64>>, AmoError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let created: wire::CreatedList = self
            .send_json(Method::POST, self.url(&["api", "v4", path], &[]), body)
            .await?;
        let items = match path {
            "leads" => created.embedded.leads,
            _ => created.embedded.contacts,
        };
        let replies: Vec<_> = items
            .iter()
            .map(|i| (i.request_id.as_ref(), i.id))
            .collect();
        Ok(match_created(count, &replies))
    }
}

/// Batch items are labelled by their index, which is unique within the request.
fn request_ids(count: usize) -> Vec<String> {
    (0..count).map(|i| i.to_string()).collect()
}

fn phone_field(phone: &Phone) -> Vec<wire::CustomFieldIn<'_>> {
    vec![wire::CustomFieldIn {
        field_code: wire::PHONE_FIELD_CODE,
        values: vec![wire::FieldValueIn {
            value: phone.as_e164(),
            enum_code: "WORK",
        }],
    }]
}

fn lead_body<'a>(lead: &'a NewAmoLead, request_id: &'a str) -> wire::NewLeadIn<'a> {
    wire::NewLeadIn {
        name: &lead.name,
        price: lead.price,
        status_id: lead.status_id,
        pipeline_id: lead.pipeline_id,
        embedded: lead.contact_id.map(|id| wire::LeadEmbeddedIn {
            contacts: vec![wire::ContactLinkIn { id, is_main: true }],
        }),
        request_id,
    }
}

fn the_one<T>(created: Vec<Option<T>>, what: &str) -> Result<T, AmoError> {
    created.into_iter().next().flatten().ok_or_else(|| {
        AmoError::InvalidResponse(format!(
            "the reply names no created {what} for our request_id"
        ))
    })
}

#[async_trait]
impl AmoTransport for HttpAmoTransport {
    async fn find_contact_by_phone(&self, phone: &Phone) -> Result<Vec<AmoContact>, AmoError> {
        let query = [("query", phone.national_digits())];
        let hits = self
            .pages(
                &["api", "v4", "contacts"],
                &query,
                |e: wire::ContactsEmbedded| e.contacts,
            )
            .await?;
        Ok(hits
            .into_iter()
            .map(AmoContact::from)
            .filter(|c| {
                c.phones
                    .iter()
                    .any(|v| phone_value_matches(v, phone, self.config.region))
            })
            .collect())
    }

    async fn get_contact(&self, id: i64) -> Result<Option<AmoContact>, AmoError> {
        let id = id.to_string();
        match self
            .get_json::<wire::ContactDto>(self.url(&["api", "v4", "contacts", &id], &[]))
            .await
        {
            Ok(found) => Ok(found.map(AmoContact::from)),
            Err(AmoError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn find_lead_by_name(&self, name: &str) -> Result<Vec<AmoLead>, AmoError> {
        let query = [("query", name), ("with", "contacts")];
        let hits = self
            .pages(&["api", "v4", "leads"], &query, |e: wire::LeadsEmbedded| {
                e.leads
            })
            .await?;
        // `query` is full-text; only an exact name is the lead asked for.
        Ok(hits
            .into_iter()
            .filter(|l| l.name.as_deref() == Some(name))
            .map(AmoLead::from)
            .collect())
    }

    async fn create_contact(&self, contact: &NewAmoContact) -> Result<i64, AmoError> {
        the_one(
            self.create_contacts(std::slice::from_ref(contact)).await?,
            "contact",
        )
    }

    async fn create_lead(&self, lead: &NewAmoLead) -> Result<i64, AmoError> {
        the_one(self.create_leads(std::slice::from_ref(lead)).await?, "lead")
    }

    async fn create_contacts(
        &self,
        contacts: &[NewAmoContact],
    ) -> Result<Vec<Option<i64>>, AmoError> {
        let ids = request_ids(contacts.len());
        let body: Vec<_> = contacts
            .iter()
            .zip(&ids)
            .map(|(contact, request_id)| wire::NewContactIn {
                name: &contact.name,
                custom_fields_values: phone_field(&contact.phone),
                request_id,
            })
            .collect();
        self.create_batch("contacts", &body, contacts.len()).await
    }

    async fn create_leads(&self, leads: &[NewAmoLead]) -> Result<Vec<Option<i64>>, AmoError> {
        let ids = request_ids(leads.len());
        let body: Vec<_> = leads
            .iter()
            .zip(&ids)
            .map(|(lead, request_id)| lead_body(lead, request_id))
            .collect();
        self.create_batch("leads", &body, leads.len()).await
    }

    async fn create_leads_with_contacts(
        &self,
        items: &[(NewAmoLead, NewAmoContact)],
    ) -> Result<Vec<Option<CreatedWithContact>>, AmoError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let ids = request_ids(items.len());
        let body: Vec<_> = items
            .iter()
            .zip(&ids)
            .map(|((lead, contact), request_id)| wire::NewLeadIn {
                name: &lead.name,
                price: lead.price,
                status_id: lead.status_id,
                pipeline_id: lead.pipeline_id,
                embedded: Some(wire::ComplexEmbeddedIn {
                    contacts: [wire::ComplexContactIn {
                        name: &contact.name,
                        first_name: &contact.name,
                        custom_fields_values: phone_field(&contact.phone),
                    }],
                }),
                request_id,
            })
            .collect();
        let url = self.url(&["api", "v4", "leads", "complex"], &[]);
        // A bare array, not the HAL envelope of plain creates.
        let created: Vec<wire::ComplexCreatedDto> =
            self.send_json(Method::POST, url, &body).await?;
        let replies: Vec<_> = created
            .iter()
            .filter_map(|c| {
                let contact_id = c.contact_id?;
                let pair = CreatedWithContact {
                    lead_id: c.id,
                    contact_id,
                };
                Some((c.request_id.as_ref(), pair))
            })
            .collect();
        Ok(match_created(items.len(), &replies))
    }

    fn is_congested(&self) -> bool {
        self.limiter.is_congested()
    }

    async fn subscribe_webhook(
        &self,
        destination: &str,
        settings: &[String],
    ) -> Result<AmoWebhook, AmoError> {
        let body = wire::WebhookIn {
            destination,
            settings,
        };
        // The created webhook comes back at the root, not under `_embedded`.
        let created: wire::WebhookDto = self
            .send_json(
                Method::POST,
                self.url(&["api", "v4", "webhooks"], &[]),
                &body,
            )
            .await?;
        Ok(created.into())
    }

    async fn unsubscribe_webhook(&self, destination: &str) -> Result<(), AmoError> {
        let body = serde_json::to_vec(&wire::WebhookDestinationIn { destination })
            .map_err(|e| AmoError::InvalidResponse(format!("could not encode request: {e}")))?;
        self.call(
            Method::DELETE,
            self.url(&["api", "v4", "webhooks"], &[]),
            Some(body),
        )
        .await?;
        Ok(())
    }

    async fn list_webhooks(&self) -> Result<Vec<AmoWebhook>, AmoError> {
        let list = self
            .get_json::<wire::WebhookList>(self.url(&["api", "v4", "webhooks"], &[]))
            .await?;
        Ok(list
            .map(|l| {
                l.embedded
                    .webhooks
                    .into_iter()
                    .map(AmoWebhook::from)
                    .collect()
            })
            .unwrap_or_default())
    }

    fn access(&self) -> AmoAccess {
        self.access.state()
    }

    async fn contacts_changed_since(
        &self,
        since: i64,
        page: u32,
    ) -> Result<AmoPage<AmoContact>, AmoError> {
        let page = self
            .changed_page(
                &["api", "v4", "contacts"],
                since,
                page,
                &[],
                |e: wire::ContactsEmbedded| e.contacts,
            )
            .await?;
        Ok(AmoPage {
            items: page.items.into_iter().map(AmoContact::from).collect(),
            more: page.more,
        })
    }

    async fn leads_changed_since(
        &self,
        since: i64,
        page: u32,
    ) -> Result<AmoPage<AmoLead>, AmoError> {
        let page = self
            .changed_page(
                &["api", "v4", "leads"],
                since,
                page,
                &[("with", "contacts")],
                |e: wire::LeadsEmbedded| e.leads,
            )
            .await?;
        Ok(AmoPage {
            items: page.items.into_iter().map(AmoLead::from).collect(),
            more: page.more,
        })
    }

    async fn contacts_by_ids(&self, ids: &[i64]) -> Result<Vec<AmoContact>, AmoError> {
        let found = self
            .by_ids(
                &["api", "v4", "contacts"],
                ids,
                &[],
                |e: wire::ContactsEmbedded| e.contacts,
            )
            .await?;
        Ok(found.into_iter().map(AmoContact::from).collect())
    }

    async fn leads_by_ids(&self, ids: &[i64]) -> Result<Vec<AmoLead>, AmoError> {
        let found = self
            .by_ids(
                &["api", "v4", "leads"],
                ids,
                &[("with", "contacts")],
                |e: wire::LeadsEmbedded| e.leads,
            )
            .await?;
        Ok(found.into_iter().map(AmoLead::from).collect())
    }

    async fn probe(&self) -> Result<(), AmoError> {
        let url = self.url(&["api", "v4", "contacts"], &[("limit", "1")]);
        self.call(Method::GET, url, None).await.map(|_| ())
    }
}

/// serde's message quotes the value it did not expect (a name, a phone from AmoCRM's
/// data): the error keeps where it happened and what kind of mistake it was.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, AmoError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let kind = match e.inner().classify() {
            serde_json::error::Category::Data => "a value of the wrong type or shape",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Eof => "a truncated body",
            serde_json::error::Category::Io => "a read error",
        };
        AmoError::InvalidResponse(format!("body does not parse: {kind} at {}", e.path()))
    })
}

/// reqwest errors never carry headers, so the token cannot leak; the URL (with its
/// query, i.e. a phone or a name) is replaced by the method and path.
fn transport_error(what: &str, err: reqwest::Error) -> AmoError {
    if err.is_timeout() {
        return AmoError::Timeout;
    }
    AmoError::Network(format!("{what}: {}", error_chain(&err.without_url())))
}

fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Bearer <token>`, marked sensitive so it never shows in `Debug` output.
fn bearer_header(token: &str) -> Result<HeaderValue, AmoError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| AmoError::Network("AmoCRM access token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_config_debug_output_hides_the_token() {
        let config = AmoClientConfig {
            base_url: Url::parse("https://x.amocrm.ru").expect("url"),
            access_token: "s3cr3t-token".into(),
            region: Region::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            max_rps: 0,
            access_probe: Duration::from_secs(60),
        };
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let transport = HttpAmoTransport::new(config).expect("client builds");
        assert!(!format!("{transport:?}").contains("s3cr3t"));
    }

    #[test]
    fn paths_are_joined_onto_a_base_with_or_without_a_trailing_slash() {
        for base in [
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/",
            "https://h/proxy",
            "https://h/proxy/",
        ] {
            let transport = HttpAmoTransport::new(AmoClientConfig {
                base_url: Url::parse(base).expect("url"),
                access_token: "t".into(),
                region: Region::default(),
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(1),
                max_rps: 0,
                access_probe: Duration::from_secs(60),
            })
            .expect("client builds");
            let url = transport.url(
                &["api", "v4", "leads"],
                &[("query", "A & Б"), ("page", "1")],
            );
            assert!(
                url.path().ends_with("/api/v4/leads") && !url.path().contains("//"),
                "{url}"
            );
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            assert_eq!(pairs[0], ("query".into(), "A & Б".into()));
            assert_eq!(pairs.len(), 2);
        }
    }
}
