//! The actix server: every HTTP worker gets the one `AppState`, the middleware stack
//! and the route table.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use slog::Logger;

use super::{blocking_threads, SHUTDOWN_TIMEOUT};
use crate::controllers;
use crate::settings;
use crate::state::AppState;

/// Binds `http`'s address (port 0 picks a free one) and returns the server, not yet
/// running, with the port it got.
pub(super) fn bind(
    http: &settings::Http,
    db_pool_size: u32,
    state: web::Data<AppState>,
    logger: &Logger,
) -> std::io::Result<(Server, u16)> {
    let listener = TcpListener::bind((http.bind_addr, http.port))?;
    let port = listener.local_addr()?.port();
    slog::info!(logger, "listening"; "addr" => http.bind_addr.to_string(), "port" => port);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            // Inside request_context, which finds the client's address.
            .wrap(from_fn(controllers::demo::internal_only))
            .wrap(from_fn(controllers::headers::protective))
            .wrap(from_fn(controllers::compression::skip_small))
            .wrap(Compress::default())
            .wrap(from_fn(controllers::compression::unmark))
            .wrap(from_fn(controllers::observe::request_context))
            // Outermost: the latency includes every middleware.
            .wrap(from_fn(controllers::observe::record_http))
            .configure(controllers::routes)
            .default_service(web::to(controllers::not_found))
    })
    .workers(http.workers.max(1))
    .worker_max_blocking_threads(blocking_threads(db_pool_size))
    .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
    // Signals are ours: `/ready` must turn 503 before the listener closes.
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, port))
}
