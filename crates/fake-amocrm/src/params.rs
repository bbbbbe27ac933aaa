//! List parameters of `GET /contacts` and `GET /leads`, and the HAL page they produce.
//!
//! `page`, `limit` (default 50, clamped to 250), `query` (a case-insensitive substring over the
//! name and every custom-field value), `with`, `filter[id][]` (also `filter[id]=1` and
//! `filter[id][0]=1`), `filter[created_at|updated_at][from|to]` in unix seconds, and
//! `order[id|updated_at]=asc|desc`. A page past the rows answers 204 with an empty body, also
//! the page behind the `next` link that a full last page still carries; there is no total.

use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::wire::{hal, no_content};

const MAX_LIMIT: usize = 250;

#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum OrderBy {
    #[default]
    Id,
    UpdatedAt,
}

#[derive(Clone, Default)]
pub(crate) struct ListParams {
    pub page: usize,
    pub limit: usize,
    pub query: Option<String>,
    pub with: Vec<String>,
    pub destination: Option<String>,
    pub ids: Vec<i64>,
    pub created: (Option<i64>, Option<i64>),
    pub updated: (Option<i64>, Option<i64>),
    pub order: (OrderBy, bool),
    /// Every pair but `page` and `limit`, to repeat in the page links.
    pub carried: Vec<(String, String)>,
}

/// One row's sort and filter keys: id, created_at, updated_at.
pub(crate) type RowKeys = (i64, i64, i64);

impl ListParams {
    pub fn parse(qs: &str) -> Result<ListParams, &'static str> {
        let mut p = ListParams {
            page: 1,
            limit: 50,
            ..ListParams::default()
        };
        for (key, value) in url::form_urlencoded::parse(qs.as_bytes()) {
            let number = value.trim().parse::<usize>().ok().filter(|n| *n > 0);
            let stamp = || {
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| "Invalid filter value")
            };
            match key.as_ref() {
                "page" => p.page = number.ok_or("Invalid page")?,
                "limit" => p.limit = number.ok_or("Invalid limit")?.min(MAX_LIMIT),
                // An empty `query=` filters nothing.
                "query" if !value.is_empty() => p.query = Some(value.to_string()),
                "with" => p.with = value.split(',').map(|w| w.trim().to_owned()).collect(),
                "filter[destination]" => p.destination = Some(value.to_string()),
                "filter[created_at][from]" => p.created.0 = Some(stamp()?),
                "filter[created_at][to]" => p.created.1 = Some(stamp()?),
                "filter[updated_at][from]" => p.updated.0 = Some(stamp()?),
                "filter[updated_at][to]" => p.updated.1 = Some(stamp()?),
                k if k == "filter[id]" || k.starts_with("filter[id][") => {
                    for id in value.split(',') {
                        p.ids
                            .push(id.trim().parse().map_err(|_| "Invalid filter value")?);
                    }
                }
                k if k.starts_with("order[") => {
                    let by = match k {
                        "order[id]" => OrderBy::Id,
                        "order[updated_at]" => OrderBy::UpdatedAt,
                        _ => return Err("Invalid order field"),
                    };
                    let desc = match value.as_ref() {
                        "asc" => false,
                        "desc" => true,
                        _ => return Err("Invalid order direction"),
                    };
                    p.order = (by, desc);
                }
                _ => {}
            }
            if key != "page" && key != "limit" {
                p.carried.push((key.into_owned(), value.into_owned()));
            }
        }
        Ok(p)
    }

    pub fn with(&self, what: &str) -> bool {
        self.with.iter().any(|w| w == what)
    }

    pub fn matches(&self, haystacks: &[&str]) -> bool {
        let query = self.query.as_deref().unwrap_or_default().to_lowercase();
        haystacks.iter().any(|h| h.to_lowercase().contains(&query))
    }

    /// The `filter[...]` conditions that do not depend on the entity type.
    pub fn admits(&self, (id, created_at, updated_at): RowKeys) -> bool {
        let within = |(from, to): (Option<i64>, Option<i64>), t: i64| {
            from.is_none_or(|f| t >= f) && to.is_none_or(|u| t <= u)
        };
        (self.ids.is_empty() || self.ids.contains(&id))
            && within(self.created, created_at)
            && within(self.updated, updated_at)
    }

    /// Sorts rows by the requested order; ties keep id order.
    pub fn sort(&self, rows: &mut [(RowKeys, Value)]) {
        let (by, desc) = self.order;
        rows.sort_by_key(|((id, _, updated), _)| match by {
            OrderBy::Id => (*id, 0),
            OrderBy::UpdatedAt => (*updated, *id),
        });
        if desc {
            rows.reverse();
        }
    }
}

/// One page of a HAL list; a full page always links `next`, even when nothing follows.
pub(crate) fn page_of(base: &str, entity: &str, rows: Vec<Value>, p: &ListParams) -> HttpResponse {
    page_at(base, entity, entity, rows, p)
}

/// Like `page_of`, for lists whose path (`contacts/custom_fields`) is not their `_embedded` key.
pub(crate) fn page_at(
    base: &str,
    path: &str,
    key: &str,
    rows: Vec<Value>,
    p: &ListParams,
) -> HttpResponse {
    let start = (p.page - 1).saturating_mul(p.limit);
    if start >= rows.len() {
        return no_content();
    }
    let rows: Vec<Value> = rows.into_iter().skip(start).take(p.limit).collect();
    let href = |page: usize| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("page", &page.to_string());
        q.append_pair("limit", &p.limit.to_string());
        for (key, value) in &p.carried {
            q.append_pair(key, value);
        }
        json!({"href": format!("{base}/api/v4/{path}?{}", q.finish())})
    };
    let mut links = json!({"self": href(p.page)});
    if rows.len() == p.limit {
        links["next"] = href(p.page + 1);
    }
    hal(json!({"_page": p.page, "_links": links, "_embedded": {key: rows}}))
}
