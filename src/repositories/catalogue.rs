//! The stored AmoCRM catalogue (`amo_custom_fields`, `amo_pipelines`, `amo_statuses`,
//! `amo_users`): replaced whole by each refresh, in one transaction, and read back in
//! AmoCRM's order (by `sort`, then id).

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::db::{retry_deadlocks, Db};
use super::RepoError;
use crate::domain::{
    Catalogue, CatalogueEntity, CustomField, FieldOption, FieldType, Pipeline, Status, User,
};
use crate::schema::{
    amo_catalogue_refreshes, amo_custom_fields, amo_pipelines, amo_statuses, amo_users,
};

/// When each part of the catalogue was last stored; `None` never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CatalogueAge {
    pub fields: Option<NaiveDateTime>,
    pub pipelines: Option<NaiveDateTime>,
    pub users: Option<NaiveDateTime>,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait CatalogueRepository: Send + Sync {
    /// Replaces the stored fields and pipelines, and the users unless `users` is
    /// `None`, in one transaction.
    async fn replace(&self, catalogue: Catalogue) -> Result<(), RepoError>;

    /// The fields of `entity`, or of every entity.
    async fn fields(&self, entity: Option<CatalogueEntity>) -> Result<Vec<CustomField>, RepoError>;

    async fn pipelines(&self) -> Result<Vec<Pipeline>, RepoError>;

    async fn users(&self) -> Result<Vec<User>, RepoError>;

    async fn age(&self) -> Result<CatalogueAge, RepoError>;
}

pub struct MysqlCatalogueRepository {
    db: Db,
}

impl MysqlCatalogueRepository {
    pub fn new(db: Db) -> Self {
        MysqlCatalogueRepository { db }
    }
}

#[derive(Queryable)]
struct FieldRow {
    entity: String,
    id: i64,
    name: String,
    field_type: String,
    code: Option<String>,
    sort: i64,
    is_api_only: bool,
    options: String,
}

impl FieldRow {
    fn into_field(self) -> Result<CustomField, RepoError> {
        let entity = self.entity.parse::<CatalogueEntity>().map_err(|_| {
            RepoError::Query(format!("amo_custom_fields holds entity `{}`", self.entity).into())
        })?;
        let options: Vec<FieldOption> = serde_json::from_str(&self.options).map_err(|e| {
            RepoError::Query(
                format!("options of custom field {} do not parse: {e}", self.id).into(),
            )
        })?;
        Ok(CustomField {
            id: self.id,
            entity,
            name: self.name,
            field_type: FieldType::from_name(&self.field_type),
            code: self.code,
            sort: self.sort,
            is_api_only: self.is_api_only,
            options,
        })
    }
}

fn touch(conn: &mut MysqlConnection, part: &str, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::replace_into(amo_catalogue_refreshes::table)
        .values((
            amo_catalogue_refreshes::part.eq(part),
            amo_catalogue_refreshes::refreshed_at.eq(now),
        ))
        .execute(conn)
}

fn store(conn: &mut MysqlConnection, catalogue: &Catalogue) -> Result<(), RepoError> {
    let now = chrono::Utc::now().naive_utc();
    let mut fields = Vec::with_capacity(catalogue.fields.len());
    for f in &catalogue.fields {
        let options = serde_json::to_string(&f.options)
            .map_err(|e| RepoError::Query(format!("cannot encode options: {e}").into()))?;
        fields.push((
            amo_custom_fields::entity.eq(f.entity.as_str()),
            amo_custom_fields::id.eq(f.id),
            amo_custom_fields::name.eq(&f.name),
            amo_custom_fields::field_type.eq(f.field_type.as_str()),
            amo_custom_fields::code.eq(f.code.as_deref()),
            amo_custom_fields::sort.eq(f.sort),
            amo_custom_fields::is_api_only.eq(f.is_api_only),
            amo_custom_fields::options.eq(options),
        ));
    }
    conn.transaction(|conn| {
        diesel::delete(amo_custom_fields::table).execute(conn)?;
        if !fields.is_empty() {
            diesel::insert_into(amo_custom_fields::table)
                .values(&fields)
                .execute(conn)?;
        }
        touch(conn, "fields", now)?;
        diesel::delete(amo_statuses::table).execute(conn)?;
        diesel::delete(amo_pipelines::table).execute(conn)?;
        let pipelines: Vec<_> = catalogue
            .pipelines
            .iter()
            .map(|p| {
                (
                    amo_pipelines::id.eq(p.id),
                    amo_pipelines::name.eq(&p.name),
                    amo_pipelines::sort.eq(p.sort),
                    amo_pipelines::is_main.eq(p.is_main),
                    amo_pipelines::is_archive.eq(p.is_archive),
                )
            })
            .collect();
        let statuses: Vec<_> = catalogue
            .pipelines
            .iter()
            .flat_map(|p| p.statuses.iter().map(move |s| (p.id, s)))
            .map(|(pipeline_id, s)| {
                (
                    amo_statuses::pipeline_id.eq(pipeline_id),
                    amo_statuses::id.eq(s.id),
                    amo_statuses::name.eq(&s.name),
                    amo_statuses::sort.eq(s.sort),
                    amo_statuses::color.eq(s.color.as_deref()),
                    amo_statuses::is_incoming.eq(s.is_incoming),
                )
            })
            .collect();
        if !pipelines.is_empty() {
            diesel::insert_into(amo_pipelines::table)
                .values(&pipelines)
                .execute(conn)?;
        }
        if !statuses.is_empty() {
            diesel::insert_into(amo_statuses::table)
                .values(&statuses)
                .execute(conn)?;
        }
        touch(conn, "pipelines", now)?;
        if let Some(users) = &catalogue.users {
            diesel::delete(amo_users::table).execute(conn)?;
            let rows: Vec<_> = users
                .iter()
                .map(|u| {
                    (
                        amo_users::id.eq(u.id),
                        amo_users::name.eq(&u.name),
                        amo_users::email.eq(u.email.as_deref()),
                        amo_users::is_active.eq(u.is_active),
                        amo_users::is_admin.eq(u.is_admin),
                    )
                })
                .collect();
            if !rows.is_empty() {
                diesel::insert_into(amo_users::table)
                    .values(&rows)
                    .execute(conn)?;
            }
            touch(conn, "users", now)?;
        }
        Ok(())
    })
}

#[async_trait]
impl CatalogueRepository for MysqlCatalogueRepository {
    async fn replace(&self, catalogue: Catalogue) -> Result<(), RepoError> {
        self.db
            .run(move |conn| retry_deadlocks(conn, |conn| store(conn, &catalogue)))
            .await
    }

    async fn fields(&self, entity: Option<CatalogueEntity>) -> Result<Vec<CustomField>, RepoError> {
        self.db
            .run(move |conn| {
                let mut query = amo_custom_fields::table
                    .order((
                        amo_custom_fields::entity.asc(),
                        amo_custom_fields::sort.asc(),
                        amo_custom_fields::id.asc(),
                    ))
                    .into_boxed();
                if let Some(entity) = entity {
                    query = query.filter(amo_custom_fields::entity.eq(entity.as_str()));
                }
                query
                    .load::<FieldRow>(conn)?
                    .into_iter()
                    .map(FieldRow::into_field)
                    .collect()
            })
            .await
    }

    async fn pipelines(&self) -> Result<Vec<Pipeline>, RepoError> {
        self.db
            .run(|conn| {
                let pipelines = amo_pipelines::table
                    .order((amo_pipelines::sort.asc(), amo_pipelines::id.asc()))
                    .load::<(i64, String, i64, bool, bool)>(conn)?;
                let statuses = amo_statuses::table
                    .order((amo_statuses::sort.asc(), amo_statuses::id.asc()))
                    .load::<(i64, i64, String, i64, Option<String>, bool)>(conn)?;
                Ok(pipelines
                    .into_iter()
                    .map(|(id, name, sort, is_main, is_archive)| Pipeline {
                        id,
                        name,
                        sort,
                        is_main,
                        is_archive,
                        statuses: statuses
                            .iter()
                            .filter(|s| s.0 == id)
                            .map(|(_, id, name, sort, color, is_incoming)| Status {
                                id: *id,
                                name: name.clone(),
                                sort: *sort,
                                color: color.clone(),
                                is_incoming: *is_incoming,
                            })
                            .collect(),
                    })
                    .collect())
            })
            .await
    }

    async fn users(&self) -> Result<Vec<User>, RepoError> {
        self.db
            .run(|conn| {
                let rows = amo_users::table.order(amo_users::id.asc()).load::<(
                    i64,
                    String,
                    Option<String>,
                    bool,
                    bool,
                )>(conn)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, name, email, is_active, is_admin)| User {
                        id,
                        name,
                        email,
                        is_active,
                        is_admin,
                    })
                    .collect())
            })
            .await
    }

    async fn age(&self) -> Result<CatalogueAge, RepoError> {
        self.db
            .run(|conn| {
                let rows = amo_catalogue_refreshes::table.load::<(String, NaiveDateTime)>(conn)?;
                let at = |part: &str| rows.iter().find(|(p, _)| p == part).map(|(_, at)| *at);
                Ok(CatalogueAge {
                    fields: at("fields"),
                    pipelines: at("pipelines"),
                    users: at("users"),
                })
            })
            .await
    }
}
