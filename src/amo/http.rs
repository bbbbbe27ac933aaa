//! `HttpAmoTransport`: the reqwest implementation of `AmoTransport` for AmoCRM API v4.
//!
//! It owns the quirks AmoCRM is known for: 204 as "nothing found", `next` links that
//! lead to a 204, non-JSON 429/403 bodies, and `query` hits that are not real matches.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Client, Method};
use url::Url;

mod catalogue;
mod creates;
mod matching;
mod paging;
mod request;
mod scrub;
mod status;

use self::creates::{lead_body, phone_field, request_ids, the_one};
use self::matching::{match_created, phone_value_matches};
use self::request::{bearer_header, error_chain};
use super::access::{AccessGuard, AmoAccess};
use super::limiter::RateLimiter;
use super::tokens::{StaticToken, TokenSource};
use super::wire;
use super::{
    AmoContact, AmoError, AmoLead, AmoPage, AmoTransport, AmoWebhook, CreatedWithContact,
    NewAmoContact, NewAmoLead,
};
use crate::domain::{CatalogueEntity, CustomField, Phone, Pipeline, Region, User};
use crate::redact::Redactor;
use crate::settings;

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

impl AmoClientConfig {
    /// The client the `AMO_*` settings describe; `region` reads AmoCRM's phones.
    pub fn from_settings(amo: &settings::Amo, region: Region) -> Self {
        AmoClientConfig {
            base_url: amo.base_url.clone(),
            access_token: amo.access_token.expose().to_owned(),
            region,
            connect_timeout: amo.connect_timeout,
            request_timeout: amo.request_timeout,
            max_rps: amo.max_rps,
            access_probe: amo.access_probe,
        }
    }
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

    async fn custom_fields(&self, entity: CatalogueEntity) -> Result<Vec<CustomField>, AmoError> {
        self.read_custom_fields(entity).await
    }

    async fn pipelines(&self) -> Result<Vec<Pipeline>, AmoError> {
        self.read_pipelines().await
    }

    async fn users(&self) -> Result<Vec<User>, AmoError> {
        self.read_users().await
    }
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
