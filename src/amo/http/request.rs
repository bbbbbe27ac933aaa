//! Sending one request: the URL, the bearer (refreshed once after a 401), the
//! shared rate limit, access refusals held back, and the answer decoded.

use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use serde::de::DeserializeOwned;
use url::Url;

use super::status::{map_status, Answer};
use super::HttpAmoTransport;
use crate::amo::AmoError;

impl HttpAmoTransport {
    pub(super) fn url(&self, path: &[&str], query: &[(&str, &str)]) -> Url {
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
    pub(super) async fn call(
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
    pub(super) async fn send(
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

    pub(super) async fn send_once(
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

    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<T>, AmoError> {
        match self.call(Method::GET, url, None).await? {
            Some(body) => decode(&body).map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn send_json<T: DeserializeOwned>(
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
}

/// serde's message quotes the value it did not expect (a name, a phone from AmoCRM's
/// data): the error keeps where it happened and what kind of mistake it was.
pub(super) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, AmoError> {
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
pub(super) fn transport_error(what: &str, err: reqwest::Error) -> AmoError {
    if err.is_timeout() {
        return AmoError::Timeout;
    }
    AmoError::Network(format!("{what}: {}", error_chain(&err.without_url())))
}

pub(super) fn error_chain(err: &reqwest::Error) -> String {
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
pub(super) fn bearer_header(token: &str) -> Result<HeaderValue, AmoError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| AmoError::Network("AmoCRM access token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}
