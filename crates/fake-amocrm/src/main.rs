//! `amosync-fake-amocrm`: a fake AmoCRM account on a port, so amosync, its clients and its
//! webhooks can run end to end without a real account.
//!
//! Every flag has a `FAKE_AMO_*` environment fallback. Operators drive the account through the
//! `/_fake/` routes (`GET /_fake/state` to look, `POST /_fake/contacts` to change, ...).

use clap::Parser;
use fake_amocrm::cli::Args;

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("listen for SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let fake = args.serve().await.unwrap_or_else(|e| {
        let addr = (args.bind, args.port);
        panic!("bind the fake AmoCRM on {addr:?}: {e}")
    });
    println!(
        "amosync-fake-amocrm listening on {} (account {}, subdomain {}, rps limit {})",
        fake.base_url(),
        args.account_id,
        args.subdomain,
        args.rps_limit
    );
    shutdown_signal().await;
    println!("amosync-fake-amocrm shutting down");
    fake.stop().await;
}
