//! Managing amosync's own webhook in AmoCRM: subscribe (once), unsubscribe, list.

use std::sync::Arc;

use super::ServiceError;
use crate::amo::{AmoTransport, AmoWebhook};

pub struct WebhookSubscription {
    amo: Arc<dyn AmoTransport>,
    /// `{SERVER_URL}/webhooks/amocrm/{secret}`; `None` while not configured.
    destination: Option<String>,
    events: Vec<String>,
}

/// What `subscribe` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    /// A hook with this destination and these events already existed.
    Already(AmoWebhook),
    Created(AmoWebhook),
}

impl WebhookSubscription {
    pub fn new(
        amo: Arc<dyn AmoTransport>,
        destination: Option<String>,
        events: Vec<String>,
    ) -> Self {
        WebhookSubscription {
            amo,
            destination,
            events,
        }
    }

    fn destination(&self) -> Result<&str, ServiceError> {
        self.destination.as_deref().ok_or_else(|| {
            ServiceError::NotConfigured("set SERVER_URL and WEBHOOK_SECRET to use webhooks".into())
        })
    }

    /// Every webhook of the account, and whether one of them is ours.
    pub async fn list(&self) -> Result<(Vec<AmoWebhook>, bool), ServiceError> {
        let hooks = self.amo.list_webhooks().await.map_err(ServiceError::amo)?;
        let ours = self
            .destination
            .as_deref()
            .is_some_and(|d| hooks.iter().any(|h| h.destination == d));
        Ok((hooks, ours))
    }

    /// Subscribes unless an identical hook exists. A hook with our destination but
    /// other events is replaced (AmoCRM has no update for hooks).
    pub async fn subscribe(&self) -> Result<Subscribed, ServiceError> {
        let destination = self.destination()?;
        let hooks = self.amo.list_webhooks().await.map_err(ServiceError::amo)?;
        if let Some(existing) = hooks.into_iter().find(|h| h.destination == destination) {
            let covers = self.events.iter().all(|e| existing.settings.contains(e));
            if covers && !existing.disabled {
                return Ok(Subscribed::Already(existing));
            }
            self.amo
                .unsubscribe_webhook(destination)
                .await
                .map_err(ServiceError::amo)?;
        }
        let created = self
            .amo
            .subscribe_webhook(destination, &self.events)
            .await
            .map_err(ServiceError::amo)?;
        Ok(Subscribed::Created(created))
    }

    /// Removes our hook; `Ok(false)` when there was none.
    pub async fn unsubscribe(&self) -> Result<bool, ServiceError> {
        let destination = self.destination()?;
        let hooks = self.amo.list_webhooks().await.map_err(ServiceError::amo)?;
        if !hooks.iter().any(|h| h.destination == destination) {
            return Ok(false);
        }
        self.amo
            .unsubscribe_webhook(destination)
            .await
            .map_err(ServiceError::amo)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::MockAmoTransport;

    const DEST: &str = "https://hooks.example.com/webhooks/amocrm/s3cr3t";

    fn hook(destination: &str, settings: &[&str]) -> AmoWebhook {
        AmoWebhook {
            id: 1,
            destination: destination.into(),
            settings: settings.iter().map(|s| s.to_string()).collect(),
            disabled: false,
        }
    }

    fn subscription(amo: MockAmoTransport) -> WebhookSubscription {
        WebhookSubscription::new(
            Arc::new(amo),
            Some(DEST.into()),
            vec!["add_contact".into(), "status_lead".into()],
        )
    }

    #[tokio::test]
    async fn subscribing_twice_is_a_no_op() {
        let mut amo = MockAmoTransport::new();
        amo.expect_list_webhooks()
            .returning(|| Ok(vec![hook(DEST, &["add_contact", "status_lead", "x"])]));
        amo.expect_subscribe_webhook().never();
        amo.expect_unsubscribe_webhook().never();
        assert!(matches!(
            subscription(amo).subscribe().await,
            Ok(Subscribed::Already(_))
        ));
    }

    #[tokio::test]
    async fn a_hook_with_other_events_is_replaced_and_foreign_hooks_are_left_alone() {
        let mut amo = MockAmoTransport::new();
        amo.expect_list_webhooks().returning(|| {
            Ok(vec![
                hook("https://other.example.com/hook", &["add_lead"]),
                hook(DEST, &["add_contact"]),
            ])
        });
        amo.expect_unsubscribe_webhook()
            .withf(|d| d == DEST)
            .times(1)
            .returning(|_| Ok(()));
        amo.expect_subscribe_webhook()
            .withf(|d, events| d == DEST && events == ["add_contact", "status_lead"])
            .times(1)
            .returning(|d, _| Ok(hook(d, &["add_contact", "status_lead"])));
        assert!(matches!(
            subscription(amo).subscribe().await,
            Ok(Subscribed::Created(_))
        ));
    }

    #[tokio::test]
    async fn unsubscribing_when_nothing_is_subscribed_is_not_an_error() {
        let mut amo = MockAmoTransport::new();
        amo.expect_list_webhooks().returning(|| Ok(vec![]));
        amo.expect_unsubscribe_webhook().never();
        assert!(matches!(subscription(amo).unsubscribe().await, Ok(false)));
    }

    #[tokio::test]
    async fn without_a_destination_nothing_is_sent_to_amocrm() {
        let s = WebhookSubscription::new(Arc::new(MockAmoTransport::new()), None, vec![]);
        assert!(matches!(
            s.subscribe().await,
            Err(ServiceError::NotConfigured(_))
        ));
    }
}
