// @generated automatically by Diesel CLI.

diesel::table! {
    contacts (id) {
        id -> Bigint,
        amocrm_id -> Nullable<Bigint>,
        #[max_length = 255]
        name -> Varchar,
        #[max_length = 32]
        phone -> Varchar,
        #[max_length = 16]
        sync_status -> Varchar,
        sync_attempts -> Integer,
        #[max_length = 512]
        sync_error -> Nullable<Varchar>,
        sync_lease_until -> Nullable<Datetime>,
        amo_updated_at -> Nullable<Bigint>,
        deleted_at -> Nullable<Datetime>,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    leads (id) {
        id -> Bigint,
        amocrm_id -> Nullable<Bigint>,
        #[max_length = 255]
        name -> Varchar,
        price -> Nullable<Bigint>,
        status_id -> Nullable<Bigint>,
        pipeline_id -> Nullable<Bigint>,
        contact_id -> Nullable<Bigint>,
        contact_amocrm_id -> Nullable<Bigint>,
        #[max_length = 16]
        sync_status -> Varchar,
        sync_attempts -> Integer,
        #[max_length = 512]
        sync_error -> Nullable<Varchar>,
        sync_lease_until -> Nullable<Datetime>,
        amo_updated_at -> Nullable<Bigint>,
        deleted_at -> Nullable<Datetime>,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::joinable!(leads -> contacts (contact_id));

diesel::allow_tables_to_appear_in_same_query!(contacts, leads);
