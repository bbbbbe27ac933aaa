//! The webhook emitter: change events in, form-encoded POSTs out, off the request path.
//!
//! Events that arrive within a short window go out together, one body per subscribed hook,
//! as AmoCRM batches them. A reply outside 100–299, a timeout or a network error is a failed
//! delivery: it is retried after each configured delay, and a hook with more than the allowed
//! failures within two hours, the latest one failed, is disabled and gets nothing more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::{JoinHandle, JoinSet};

use crate::events::{Delivery, Event};
use crate::payload;
use crate::state::Shared;

/// How long the emitter waits for more changes before it sends a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// The span of the disable rule.
const FAILURE_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

/// Runs the emitter on the current runtime until the task is aborted.
pub(crate) fn spawn(shared: Arc<Shared>, events: UnboundedReceiver<Event>) -> JoinHandle<()> {
    tokio::spawn(run(shared, events))
}

async fn run(shared: Arc<Shared>, mut events: UnboundedReceiver<Event>) {
    let client = reqwest::Client::builder()
        // A redirect is a reply outside 100–299, so it must not be followed.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(shared.config.webhook_timeout)
        .build()
        .unwrap_or_default();
    // Aborting this task drops the set, which aborts every delivery still in flight.
    let mut deliveries = JoinSet::new();
    loop {
        tokio::select! {
            first = events.recv() => {
                let Some(first) = first else { break };
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
                while let Ok(Some(more)) = tokio::time::timeout_at(deadline, events.recv()).await {
                    batch.push(more);
                }
                for (hook_id, destination, body) in plan(&shared, &batch) {
                    let job = deliver(shared.clone(), client.clone(), hook_id, destination, body);
                    deliveries.spawn(job);
                }
            }
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
        }
    }
    while deliveries.join_next().await.is_some() {}
}

/// One body per live hook subscribed to at least one of the events.
fn plan(shared: &Shared, batch: &[Event]) -> Vec<(i64, String, String)> {
    let config = &shared.config;
    let state = shared.lock();
    let mut bodies = Vec::new();
    for hook in state.webhooks.iter().filter(|w| !w.disabled) {
        let wanted: Vec<&Event> = batch
            .iter()
            .filter(|e| hook.settings.contains(&e.setting()))
            .collect();
        if !wanted.is_empty() {
            let body = payload::form_body(&wanted, &config.subdomain, config.account_id);
            bodies.push((hook.id, hook.destination.clone(), body));
        }
    }
    bodies
}

/// The first attempt, then one retry per configured delay, while the hook stays subscribed
/// and enabled.
async fn deliver(
    shared: Arc<Shared>,
    client: reqwest::Client,
    hook_id: i64,
    destination: String,
    body: String,
) {
    let delays = shared.config.webhook_retry_delays.clone();
    for attempt in 1..=delays.len() + 1 {
        if !is_live(&shared, hook_id) {
            return;
        }
        let reply = client
            .post(&destination)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await;
        let (status, error) = match reply {
            Ok(resp) => (Some(resp.status().as_u16()), None),
            Err(e) if e.is_timeout() => (None, Some("timeout".to_owned())),
            Err(e) => (None, Some(describe(e))),
        };
        let delivery = Delivery {
            webhook_id: hook_id,
            destination: destination.clone(),
            body: body.clone(),
            attempt,
            status,
            error,
        };
        let succeeded = delivery.succeeded();
        if shared.config.log_to_stdout {
            log_attempt(&delivery);
        }
        record(&shared, delivery);
        if succeeded {
            return;
        }
        if let Some(delay) = delays.get(attempt - 1) {
            tokio::time::sleep(*delay).await;
        }
    }
}

/// The error with its causes, without the destination URL and the secret its query may carry.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn is_live(shared: &Shared, hook_id: i64) -> bool {
    let state = shared.lock();
    state
        .webhooks
        .iter()
        .any(|w| w.id == hook_id && !w.disabled)
}

/// Keeps the attempt and applies the disable rule to a failed one.
fn record(shared: &Shared, delivery: Delivery) {
    let limit = shared.config.disable_after_failures;
    let mut state = shared.lock();
    if !delivery.succeeded() {
        let hook = state
            .webhooks
            .iter_mut()
            .find(|w| w.id == delivery.webhook_id);
        if let Some(hook) = hook {
            let now = Instant::now();
            hook.failures.push_back(now);
            while hook
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
            {
                hook.failures.pop_front();
            }
            if hook.failures.len() > limit {
                hook.disabled = true;
            }
        }
    }
    state.record_delivery(delivery);
}

/// A destination's query string and last path segment often carry a shared secret
/// (amosync's ends in `/webhooks/amocrm/{secret}`), so the log shows neither.
fn log_attempt(d: &Delivery) {
    let target = url::Url::parse(&d.destination).map_or_else(
        |_| "<invalid url>".to_owned(),
        |u| {
            format!(
                "{}{}",
                u.origin().ascii_serialization(),
                masked_path(u.path())
            )
        },
    );
    let outcome = match (d.status, &d.error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => error.clone(),
        (None, None) => "no reply".to_owned(),
    };
    println!(
        "webhook hook.id={} attempt={} destination={target} outcome={outcome}",
        d.webhook_id, d.attempt
    );
}

/// `/webhooks/amocrm/s3cr3t` -> `/webhooks/amocrm/***`; `/` stays.
fn masked_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(cut) if cut + 1 < trimmed.len() => format!("{}***", &trimmed[..=cut]),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::masked_path;

    #[test]
    fn the_last_path_segment_of_a_destination_is_masked() {
        assert_eq!(
            masked_path("/webhooks/amocrm/s3cr3t"),
            "/webhooks/amocrm/***"
        );
        assert_eq!(masked_path("/hook/s3cr3t/"), "/hook/***");
        assert_eq!(masked_path("/"), "/");
        assert_eq!(masked_path(""), "");
    }
}
