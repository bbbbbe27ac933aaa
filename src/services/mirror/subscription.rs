//! Managing amosync's own webhook in AmoCRM: subscribe (once), unsubscribe, list,
//! and verify that it is active (one of the facts that make the mirror authoritative).

use std::sync::Arc;

use crate::amo::{AmoTransport, AmoWebhook};
use crate::repositories::{MirrorFact, MirrorFactRepository};
use crate::services::ServiceError;

/// Without these events the mirror misses new records or changed phones and names,
/// so it cannot stand in for AmoCRM's search.
pub const MIRROR_EVENTS: [&str; 4] = ["add_contact", "update_contact", "add_lead", "update_lead"];

pub struct WebhookSubscription {
    amo: Arc<dyn AmoTransport>,
    /// `{SERVER_URL}/webhooks/amocrm/{secret}`; `None` while not configured.
    destination: Option<String>,
    events: Vec<String>,
    /// Where "our webhook is active" is recorded; `None`: nowhere.
    facts: Option<Arc<dyn MirrorFactRepository>>,
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
            facts: None,
        }
    }

    /// Records the webhook fact whenever AmoCRM confirms (or denies) our hook.
    pub fn with_facts(mut self, facts: Arc<dyn MirrorFactRepository>) -> Self {
        self.facts = Some(facts);
        self
    }

    /// Asks AmoCRM whether our hook is there, enabled and carrying `MIRROR_EVENTS`,
    /// and records the answer: "we once subscribed" proves nothing, since an admin
    /// can delete the hook and AmoCRM disables hooks that fail too often.
    pub async fn verify(&self) -> Result<bool, ServiceError> {
        let active = match self.destination.as_deref() {
            None => false,
            Some(destination) => {
                let hooks = self.amo.list_webhooks().await.map_err(ServiceError::amo)?;
                hooks.iter().any(|hook| {
                    hook.destination == destination
                        && !hook.disabled
                        && MIRROR_EVENTS
                            .iter()
                            .all(|event| hook.settings.iter().any(|s| s == event))
                })
            }
        };
        if let Some(facts) = &self.facts {
            if active {
                facts.record(MirrorFact::WebhookActive).await?;
            } else {
                facts.clear(MirrorFact::WebhookActive).await?;
            }
        }
        Ok(active)
    }

    /// Records a hook AmoCRM just confirmed, when it carries the mirror's events.
    async fn confirmed(&self, hook: &AmoWebhook) -> Result<(), ServiceError> {
        let covers = MIRROR_EVENTS
            .iter()
            .all(|event| hook.settings.iter().any(|s| s == event));
        match &self.facts {
            Some(facts) if covers && !hook.disabled => {
                Ok(facts.record(MirrorFact::WebhookActive).await?)
            }
            _ => Ok(()),
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

    /// amosync's own hook, if AmoCRM has it. API clients see only this one: other
    /// integrations' destinations carry their own secrets.
    pub async fn ours(&self) -> Result<Option<AmoWebhook>, ServiceError> {
        let Some(destination) = self.destination.as_deref() else {
            return Ok(None);
        };
        let hooks = self.amo.list_webhooks().await.map_err(ServiceError::amo)?;
        Ok(hooks.into_iter().find(|h| h.destination == destination))
    }

    /// Subscribes unless an identical hook exists. A hook with our destination but
    /// other events is replaced (AmoCRM has no update for hooks).
    pub async fn subscribe(&self) -> Result<Subscribed, ServiceError> {
        let destination = self.destination()?;
        let hooks = self.amo.list_webhooks().await.map_err(ServiceError::amo)?;
        if let Some(existing) = hooks.into_iter().find(|h| h.destination == destination) {
            let covers = self.events.iter().all(|e| existing.settings.contains(e));
            if covers && !existing.disabled {
                self.confirmed(&existing).await?;
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
        self.confirmed(&created).await?;
        Ok(Subscribed::Created(created))
    }

    /// Removes our hook; `Ok(false)` when there was none.
    pub async fn unsubscribe(&self) -> Result<bool, ServiceError> {
        let destination = self.destination()?;
        let hooks = self.amo.list_webhooks().await.map_err(ServiceError::amo)?;
        if !hooks.iter().any(|h| h.destination == destination) {
            return Ok(false);
        }
        if let Some(facts) = &self.facts {
            // Withdrawn first: without the hook the mirror must not be trusted a moment longer.
            facts.clear(MirrorFact::WebhookActive).await?;
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
    async fn only_an_enabled_hook_of_ours_with_the_mirror_events_counts_as_active() {
        use crate::repositories::MockMirrorFactRepository;
        let all = ["add_contact", "update_contact", "add_lead", "update_lead"];
        let cases = [
            (vec![hook(DEST, &all)], true),
            (vec![hook("https://other.example.com/hook", &all)], false),
            (vec![hook(DEST, &["add_contact", "update_contact"])], false),
            (
                vec![AmoWebhook {
                    disabled: true,
                    ..hook(DEST, &all)
                }],
                false,
            ),
            (vec![], false),
        ];
        for (hooks, active) in cases {
            let mut amo = MockAmoTransport::new();
            let listed = hooks.clone();
            amo.expect_list_webhooks()
                .returning(move || Ok(listed.clone()));
            let mut facts = MockMirrorFactRepository::new();
            facts
                .expect_record()
                .withf(|fact| *fact == MirrorFact::WebhookActive)
                .times(usize::from(active))
                .returning(|_| Ok(()));
            facts
                .expect_clear()
                .withf(|fact| *fact == MirrorFact::WebhookActive)
                .times(usize::from(!active))
                .returning(|_| Ok(()));
            let verified = subscription(amo)
                .with_facts(Arc::new(facts))
                .verify()
                .await
                .expect("verified");
            assert_eq!(verified, active, "{hooks:?}");
        }
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
