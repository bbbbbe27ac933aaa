//! Reading the account's catalogue: custom fields per entity and users (both paged,
//! walked until AmoCRM announces no next page), and pipelines (one answer).

use reqwest::Method;

use super::request::decode;
use super::HttpAmoTransport;
use crate::amo::wire::{self, ListPage};
use crate::amo::AmoError;
use crate::domain::{CatalogueEntity, CustomField, Pipeline, User};

/// AmoCRM's page size for users; custom fields may come 50 to a page whatever is asked.
const USERS_PAGE_LIMIT: &str = "250";
/// 40 × 250 users is beyond any account; the cap only stops a runaway walk.
const MAX_USER_PAGES: u32 = 40;

impl HttpAmoTransport {
    pub(super) async fn read_custom_fields(
        &self,
        entity: CatalogueEntity,
    ) -> Result<Vec<CustomField>, AmoError> {
        let found = self
            .pages(
                &["api", "v4", entity.as_str(), "custom_fields"],
                &[],
                |e: wire::CustomFieldsEmbedded| e.custom_fields,
            )
            .await?;
        Ok(found.into_iter().map(|f| f.into_field(entity)).collect())
    }

    pub(super) async fn read_pipelines(&self) -> Result<Vec<Pipeline>, AmoError> {
        let url = self.url(&["api", "v4", "leads", "pipelines"], &[]);
        let list = self.get_json::<wire::PipelineList>(url).await?;
        Ok(list
            .map(|l| {
                l.embedded
                    .pipelines
                    .into_iter()
                    .map(Pipeline::from)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Only an admin's token may list users; another gets 403. That 403 says nothing
    /// about the account, so, unlike every other call's, it does not hold calls back.
    pub(super) async fn read_users(&self) -> Result<Vec<User>, AmoError> {
        let mut all = Vec::new();
        for page in 1..=MAX_USER_PAGES {
            let page = page.to_string();
            let url = self.url(
                &["api", "v4", "users"],
                &[("limit", USERS_PAGE_LIMIT), ("page", page.as_str())],
            );
            self.access.check()?;
            let outcome = self
                .send(Method::GET, url, None)
                .await
                .map_err(|e| e.redacted(&self.redactor));
            if !matches!(outcome, Err(AmoError::Forbidden)) {
                self.access.record(&outcome);
            }
            let Some(body) = outcome? else {
                break;
            };
            let list: ListPage<wire::UsersEmbedded> = decode(&body)?;
            let more = list.has_next();
            let found = list.embedded.users;
            if found.is_empty() {
                break;
            }
            all.extend(found.into_iter().map(User::from));
            if !more {
                break;
            }
        }
        Ok(all)
    }
}
