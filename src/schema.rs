// @generated automatically by Diesel CLI.

diesel::table! {
    amo_catalogue_refreshes (part) {
        #[max_length = 16]
        part -> Varchar,
        refreshed_at -> Datetime,
    }
}

diesel::table! {
    amo_custom_fields (entity, id) {
        #[max_length = 16]
        entity -> Varchar,
        id -> Bigint,
        name -> Text,
        #[max_length = 64]
        field_type -> Varchar,
        #[max_length = 255]
        code -> Nullable<Varchar>,
        sort -> Bigint,
        is_api_only -> Bool,
        options -> Longtext,
    }
}

diesel::table! {
    amo_pipelines (id) {
        id -> Bigint,
        name -> Text,
        sort -> Bigint,
        is_main -> Bool,
        is_archive -> Bool,
    }
}

diesel::table! {
    amo_senders (instance_id) {
        #[max_length = 64]
        instance_id -> Varchar,
        seen_at -> Datetime,
    }
}

diesel::table! {
    amo_statuses (pipeline_id, id) {
        pipeline_id -> Bigint,
        id -> Bigint,
        name -> Text,
        sort -> Bigint,
        #[max_length = 32]
        color -> Nullable<Varchar>,
        is_incoming -> Bool,
    }
}

diesel::table! {
    amo_tokens (id) {
        id -> Tinyint,
        access_token -> Text,
        refresh_token -> Text,
        expires_at -> Bigint,
        needs_reauth -> Bool,
        #[max_length = 512]
        last_error -> Nullable<Varchar>,
        refreshing_until -> Nullable<Datetime>,
        updated_at -> Datetime,
    }
}

diesel::table! {
    amo_users (id) {
        id -> Bigint,
        name -> Text,
        #[max_length = 255]
        email -> Nullable<Varchar>,
        is_active -> Bool,
        is_admin -> Bool,
    }
}

diesel::table! {
    companies (id) {
        id -> Bigint,
        amocrm_id -> Bigint,
        #[max_length = 255]
        name -> Varchar,
        responsible_user_id -> Nullable<Bigint>,
        amo_updated_at -> Nullable<Bigint>,
        deleted_at -> Nullable<Datetime>,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    contact_duplicates (first_amocrm_id, second_amocrm_id) {
        first_amocrm_id -> Bigint,
        second_amocrm_id -> Bigint,
        #[max_length = 32]
        phone -> Varchar,
        detected_at -> Datetime,
    }
}

diesel::table! {
    contact_merges (contact_id) {
        contact_id -> Bigint,
        merged_into -> Bigint,
        #[max_length = 32]
        phone -> Varchar,
        merged_at -> Datetime,
    }
}

diesel::table! {
    contacts (id) {
        id -> Bigint,
        amocrm_id -> Nullable<Bigint>,
        #[max_length = 255]
        name -> Varchar,
        #[max_length = 32]
        phone -> Nullable<Varchar>,
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
    idempotency_keys (client_id, idem_key) {
        #[max_length = 64]
        client_id -> Varchar,
        #[max_length = 255]
        idem_key -> Varchar,
        #[max_length = 64]
        request_hash -> Char,
        #[max_length = 16]
        status -> Varchar,
        response_status -> Nullable<Integer>,
        #[max_length = 64]
        content_type -> Nullable<Varchar>,
        #[max_length = 512]
        location -> Nullable<Varchar>,
        response_body -> Nullable<Mediumblob>,
        started_at -> Datetime,
        expires_at -> Datetime,
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

diesel::table! {
    mirror_facts (name) {
        #[max_length = 32]
        name -> Varchar,
        recorded_at -> Datetime,
    }
}

diesel::table! {
    mirror_refetch (entity, amocrm_id) {
        #[max_length = 16]
        entity -> Varchar,
        amocrm_id -> Bigint,
        attempts -> Integer,
        due_at -> Datetime,
        queued_at -> Datetime,
    }
}

diesel::table! {
    sync_cursors (name) {
        #[max_length = 64]
        name -> Varchar,
        position -> Bigint,
        leased_until -> Nullable<Datetime>,
        updated_at -> Datetime,
    }
}

diesel::table! {
    sync_jobs (id) {
        id -> Bigint,
        #[max_length = 16]
        entity -> Varchar,
        record_id -> Bigint,
        #[max_length = 16]
        status -> Varchar,
        attempts -> Integer,
        #[max_length = 512]
        last_error -> Nullable<Varchar>,
        next_attempt_at -> Datetime,
        leased_until -> Nullable<Datetime>,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    webhook_inbox (id) {
        id -> Bigint,
        #[max_length = 128]
        content_type -> Varchar,
        body -> Mediumblob,
        #[max_length = 16]
        status -> Varchar,
        attempts -> Integer,
        #[max_length = 512]
        last_error -> Nullable<Varchar>,
        next_attempt_at -> Datetime,
        leased_until -> Nullable<Datetime>,
        received_at -> Datetime,
        processed_at -> Nullable<Datetime>,
    }
}

diesel::joinable!(leads -> contacts (contact_id));

diesel::allow_tables_to_appear_in_same_query!(
    amo_catalogue_refreshes,
    amo_custom_fields,
    amo_pipelines,
    amo_senders,
    amo_statuses,
    amo_tokens,
    amo_users,
    companies,
    contact_duplicates,
    contact_merges,
    contacts,
    idempotency_keys,
    leads,
    mirror_facts,
    mirror_refetch,
    sync_cursors,
    sync_jobs,
    webhook_inbox,
);
