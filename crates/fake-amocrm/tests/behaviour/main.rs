//! Tests of the fake AmoCRM itself: each checks one AmoCRM behaviour that amosync's tests and
//! local runs rely on. One binary, one module per area.

mod admin;
mod api;
mod binary;
mod catalogue;
mod emitter;
mod helpers;
mod lists_and_errors;
mod oauth;
mod rate_limit;
