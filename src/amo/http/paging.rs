//! Reading lists: a search walked page by page, one page of changes, records by id.

use serde::de::DeserializeOwned;

use super::HttpAmoTransport;
use crate::amo::wire::ListPage;
use crate::amo::{AmoError, AmoPage, MAX_IDS_PER_READ};

/// AmoCRM's maximum page size: fewer requests against a 7 req/s budget.
const PAGE_LIMIT: &str = "250";
/// 20 × 250 rows is far beyond any honest match; the cap stops a runaway walk, which
/// AmoCRM itself flags as suspicious behaviour.
const MAX_PAGES: u32 = 20;

impl HttpAmoTransport {
    /// Walks `page=1,2,…` until a 204, an empty page, no `next` link, or `MAX_PAGES`.
    /// Page numbers are counted here rather than following `next` hrefs, so the
    /// token is only ever sent to the configured host.
    pub(super) async fn pages<E, T>(
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
    pub(super) async fn changed_page<E, T>(
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
    pub(super) async fn by_ids<E, T>(
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
}
