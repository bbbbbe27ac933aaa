//! Accepting a webhook delivery: check the secret and the account, store it raw
//! (through the group commit), answer. Applying it is the inbox worker's job.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::{GroupCommit, Intake};
use crate::repositories::NewDelivery;
use crate::services::ServiceError;
use crate::webhooks::{check_delivery, Account};

/// The account deliveries must come from, when configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedAccount {
    pub id: Option<i64>,
    pub subdomain: Option<String>,
}

/// `AMO_ACCOUNT_ID` and the subdomain of `AMO_DOMAIN`, from the amo section.
impl From<&crate::settings::Amo> for ExpectedAccount {
    fn from(amo: &crate::settings::Amo) -> Self {
        ExpectedAccount {
            id: amo.account_id,
            subdomain: amo.subdomain.clone(),
        }
    }
}

impl ExpectedAccount {
    fn admits(&self, account: &Account) -> bool {
        let id_ok = self.id.is_none_or(|id| account.id == Some(id));
        let subdomain_ok = self.subdomain.as_deref().is_none_or(|expected| {
            account
                .subdomain
                .as_deref()
                .is_some_and(|got| got.eq_ignore_ascii_case(expected))
        });
        id_ok && subdomain_ok
    }
}

pub struct WebhookReceiver {
    secret: Option<String>,
    account: ExpectedAccount,
    inbox: GroupCommit,
    intake: Arc<Intake>,
}

impl WebhookReceiver {
    pub fn new(
        secret: Option<String>,
        account: ExpectedAccount,
        inbox: GroupCommit,
        intake: Arc<Intake>,
    ) -> Self {
        WebhookReceiver {
            secret,
            account,
            inbox,
            intake,
        }
    }

    /// Whether `presented` is the webhook secret (compared in constant time).
    pub fn knows(&self, presented: &str) -> bool {
        self.secret
            .as_deref()
            .is_some_and(|secret| bool::from(secret.as_bytes().ct_eq(presented.as_bytes())))
    }

    /// Checks and stores one delivery; `Ok` only once it is durable. Applying it
    /// happens later, in the worker, so AmoCRM's 2-second budget is never at risk.
    pub async fn accept(
        &self,
        presented_secret: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<i64, ServiceError> {
        if !self.knows(presented_secret) {
            return Err(ServiceError::NotFound);
        }
        let _acking = self.intake.acking();
        let account = check_delivery(content_type, &body).map_err(ServiceError::Payload)?;
        if !self.account.admits(&account) {
            return Err(ServiceError::WrongAccount);
        }
        let id = self
            .inbox
            .store(NewDelivery {
                content_type: content_type.unwrap_or_default().to_owned(),
                body,
            })
            .await?;
        self.intake.stored();
        Ok(id)
    }
}
