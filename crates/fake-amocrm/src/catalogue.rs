//! The account's catalogue: custom fields of contacts, leads and companies, the lead
//! pipelines with their statuses, and the users, in the shapes of `GET
//! /api/v4/{entity}/custom_fields` (at most 50 per page, `_links.next` while a page is full),
//! `GET /api/v4/leads/pipelines` (statuses under each pipeline's `_embedded`, not paged) and
//! `GET /api/v4/users` (up to 250 per page). Only system fields carry a `code`; user fields
//! read back `code: null`. The ids agree with what contacts, leads and webhooks carry.

use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::params::{page_at, ListParams};
use crate::records::{
    CLOSED_DATE_FIELD_ID, DEFAULT_PIPELINE_ID, DEFAULT_STATUS_ID, LEAD_COMMENT_FIELD_ID,
    LOST_STATUS_ID, NOTE_FIELD_ID, PHONE_ENUMS, PHONE_FIELD_ID, RESPONSIBLE_USER_ID, WON_STATUS_ID,
};
use crate::wire::{hal, problem};

/// AmoCRM's note on custom fields: at most 50 per request, whatever `limit` says.
const FIELDS_PER_PAGE: usize = 50;
/// The second pipeline of the seeded account.
pub(crate) const PARTNERS_PIPELINE_ID: i64 = 2_021;
/// A second, inactive user.
pub(crate) const INACTIVE_USER_ID: i64 = 8_370_002;

pub(crate) struct Catalogue {
    /// (entity, field) in AmoCRM's order.
    pub fields: Vec<(&'static str, Value)>,
    pub pipelines: Vec<Value>,
    pub users: Vec<Value>,
    /// `GET /users` answers 403, as it does to a token that is not an admin's.
    pub users_forbidden: bool,
    next_id: i64,
}

fn options(values: &[(&str, i64)]) -> Value {
    let option = |(i, (value, id)): (usize, &(&str, i64))| json!({"id": id, "value": value, "sort": (i as i64 + 1) * 10});
    values.iter().enumerate().map(option).collect()
}

fn field(entity: &str, id: i64, name: &str, kind: &str, code: Option<&str>, sort: i64) -> Value {
    json!({"id": id, "name": name, "type": kind, "account_id": 29_000_001, "code": code,
        "sort": sort, "is_api_only": false, "enums": null, "group_id": null,
        "required_statuses": [], "is_deletable": code.is_none(), "is_predefined": code.is_some(),
        "entity_type": entity, "remind": null,
        "_links": {"self": {"href": format!("/api/v4/{entity}/custom_fields/{id}")}}})
}

fn with_enums(mut field: Value, enums: Value) -> Value {
    field["enums"] = enums;
    field
}

fn status(pipeline: i64, id: i64, name: &str, sort: i64, color: &str, kind: i64) -> Value {
    json!({"id": id, "name": name, "sort": sort, "is_editable": kind == 0 && id != WON_STATUS_ID && id != LOST_STATUS_ID,
        "pipeline_id": pipeline, "color": color, "type": kind, "account_id": 29_000_001,
        "_links": {"self": {"href": format!("/api/v4/leads/pipelines/{pipeline}/statuses/{id}")}}})
}

fn pipeline(id: i64, name: &str, sort: i64, is_main: bool, statuses: Vec<Value>) -> Value {
    json!({"id": id, "name": name, "sort": sort, "is_main": is_main, "is_unsorted_on": true,
        "is_archive": false, "account_id": 29_000_001,
        "_links": {"self": {"href": format!("/api/v4/leads/pipelines/{id}")}},
        "_embedded": {"statuses": statuses}})
}

fn user(id: i64, name: &str, email: &str, admin: bool, active: bool) -> Value {
    json!({"id": id, "name": name, "email": email, "lang": "ru",
        "rights": {"leads": {"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"},
            "contacts": {"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"},
            "companies": {"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"},
            "mail_access": true, "catalog_access": true, "status_rights": [],
            "is_admin": admin, "is_free": false, "is_active": active, "group_id": null, "role_id": null},
        "_links": {"self": {"href": format!("/api/v4/users/{id}")}}})
}

impl Catalogue {
    /// A few fields of each type (select and multiselect with options, PHONE/EMAIL
    /// multitext, dates, UTM tracking fields), two pipelines with 142/143, two users.
    pub fn seeded() -> Catalogue {
        let phone_enums: Vec<(&str, i64)> = PHONE_ENUMS.to_vec();
        let c = "contacts";
        let l = "leads";
        let co = "companies";
        let fields = vec![
            (
                c,
                with_enums(
                    field(c, PHONE_FIELD_ID, "Телефон", "multitext", Some("PHONE"), 4),
                    options(&phone_enums),
                ),
            ),
            (
                c,
                with_enums(
                    field(c, 112, "Email", "multitext", Some("EMAIL"), 6),
                    options(&[("WORK", 232), ("PRIV", 233), ("OTHER", 234)]),
                ),
            ),
            (c, field(c, 113, "Должность", "text", Some("POSITION"), 2)),
            (c, field(c, NOTE_FIELD_ID, "Код оплаты", "text", None, 508)),
            (
                c,
                with_enums(
                    field(c, 114, "Источник", "select", None, 510),
                    options(&[("Реклама", 241), ("Сайт", 242), ("Рекомендация", 243)]),
                ),
            ),
            (
                c,
                with_enums(
                    field(c, 115, "Интересы", "multiselect", None, 511),
                    options(&[("Доставка", 251), ("Самовывоз", 252), ("Опт", 253)]),
                ),
            ),
            (c, field(c, 116, "Дата рождения", "birthday", None, 512)),
            (
                c,
                field(c, 117, "Согласие на рассылку", "checkbox", None, 513),
            ),
            (
                l,
                field(l, LEAD_COMMENT_FIELD_ID, "Комментарий", "text", None, 501),
            ),
            (
                l,
                field(l, CLOSED_DATE_FIELD_ID, "Дата закрытия", "date", None, 502),
            ),
            (l, field(l, 556, "Дата визита", "date_time", None, 503)),
            (
                l,
                with_enums(
                    field(l, 557, "Тип заявки", "select", None, 504),
                    options(&[("Звонок", 261), ("Форма", 262), ("Чат", 263)]),
                ),
            ),
            (l, field(l, 558, "Бюджет клиента", "numeric", None, 505)),
            (l, field(l, 559, "Страница", "url", None, 506)),
            (
                l,
                field(
                    l,
                    560,
                    "utm_source",
                    "tracking_data",
                    Some("UTM_SOURCE"),
                    20,
                ),
            ),
            (
                l,
                field(
                    l,
                    561,
                    "utm_medium",
                    "tracking_data",
                    Some("UTM_MEDIUM"),
                    21,
                ),
            ),
            (
                l,
                field(
                    l,
                    562,
                    "utm_campaign",
                    "tracking_data",
                    Some("UTM_CAMPAIGN"),
                    22,
                ),
            ),
            (
                l,
                field(
                    l,
                    563,
                    "utm_content",
                    "tracking_data",
                    Some("UTM_CONTENT"),
                    23,
                ),
            ),
            (
                l,
                field(l, 564, "utm_term", "tracking_data", Some("UTM_TERM"), 24),
            ),
            (
                l,
                field(
                    l,
                    565,
                    "referrer",
                    "tracking_data",
                    Some("UTM_REFERRER"),
                    25,
                ),
            ),
            (
                co,
                with_enums(
                    field(co, 661, "Телефон", "multitext", Some("PHONE"), 4),
                    options(&[
                        ("WORK", 671),
                        ("WORKDD", 672),
                        ("MOB", 673),
                        ("FAX", 674),
                        ("HOME", 675),
                        ("OTHER", 676),
                    ]),
                ),
            ),
            (
                co,
                with_enums(
                    field(co, 662, "Email", "multitext", Some("EMAIL"), 6),
                    options(&[("WORK", 681), ("PRIV", 682), ("OTHER", 683)]),
                ),
            ),
            (co, field(co, 663, "Web", "url", Some("WEB"), 8)),
            (co, field(co, 664, "Адрес", "textarea", Some("ADDRESS"), 10)),
        ];
        let p = DEFAULT_PIPELINE_ID;
        let q = PARTNERS_PIPELINE_ID;
        let pipelines = vec![
            pipeline(
                p,
                "Воронка",
                1,
                true,
                vec![
                    status(p, 10_100, "Неразобранное", 10, "#c1c1c1", 1),
                    status(p, DEFAULT_STATUS_ID, "Первичный контакт", 20, "#99ccff", 0),
                    status(p, 10_102, "Переговоры", 30, "#ffff99", 0),
                    status(
                        p,
                        WON_STATUS_ID,
                        "Успешно реализовано",
                        10_000,
                        "#CCFF66",
                        0,
                    ),
                    status(
                        p,
                        LOST_STATUS_ID,
                        "Закрыто и не реализовано",
                        11_000,
                        "#D5D8DB",
                        0,
                    ),
                ],
            ),
            pipeline(
                q,
                "Партнёры",
                2,
                false,
                vec![
                    status(q, 10_200, "Неразобранное", 10, "#c1c1c1", 1),
                    status(q, 10_201, "Заявка партнёра", 20, "#ffcc66", 0),
                    status(
                        q,
                        WON_STATUS_ID,
                        "Успешно реализовано",
                        10_000,
                        "#CCFF66",
                        0,
                    ),
                    status(
                        q,
                        LOST_STATUS_ID,
                        "Закрыто и не реализовано",
                        11_000,
                        "#D5D8DB",
                        0,
                    ),
                ],
            ),
        ];
        let users = vec![
            user(
                RESPONSIBLE_USER_ID,
                "Анна Менеджер",
                "anna@example.com",
                true,
                true,
            ),
            user(
                INACTIVE_USER_ID,
                "Борис Уволен",
                "boris@example.com",
                false,
                false,
            ),
        ];
        Catalogue {
            fields,
            pipelines,
            users,
            users_forbidden: false,
            next_id: 900,
        }
    }

    /// Adds a user field (no code) to `entity`; answers its id.
    pub fn add_field(&mut self, entity: &'static str, name: &str, kind: &str) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        self.fields
            .push((entity, field(entity, id, name, kind, None, 1_000 + id)));
        id
    }

    /// Removes a field, as an admin deleting it would; whether it existed.
    pub fn remove_field(&mut self, id: i64) -> bool {
        let before = self.fields.len();
        self.fields.retain(|(_, f)| f["id"].as_i64() != Some(id));
        before != self.fields.len()
    }
}

pub(crate) fn list_fields(
    catalogue: &Catalogue,
    base: &str,
    entity: &str,
    p: &ListParams,
) -> HttpResponse {
    let rows: Vec<Value> = catalogue
        .fields
        .iter()
        .filter(|(e, _)| *e == entity)
        .map(|(_, f)| f.clone())
        .collect();
    let p = ListParams {
        limit: p.limit.min(FIELDS_PER_PAGE),
        ..p.clone()
    };
    page_at(
        base,
        &format!("{entity}/custom_fields"),
        "custom_fields",
        rows,
        &p,
    )
}

pub(crate) fn list_pipelines(catalogue: &Catalogue, base: &str) -> HttpResponse {
    hal(json!({"_total_items": catalogue.pipelines.len(),
        "_links": {"self": {"href": format!("{base}/api/v4/leads/pipelines")}},
        "_embedded": {"pipelines": catalogue.pipelines}}))
}

pub(crate) fn list_users(catalogue: &Catalogue, base: &str, p: &ListParams) -> HttpResponse {
    if catalogue.users_forbidden {
        return problem(403, "Insufficient rights");
    }
    page_at(base, "users", "users", catalogue.users.clone(), p)
}
