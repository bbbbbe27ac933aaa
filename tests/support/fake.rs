//! The fake AmoCRM for tests that run amosync's own binary: started from the flags the
//! `amosync-fake-amocrm` binary takes, on a thread and runtime of its own, so that it keeps
//! serving while a test blocks on a child process, as the separate binary would. (That
//! binary lives in another package of the workspace, out of reach of `CARGO_BIN_EXE_*`;
//! the fake's own tests run it.)

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use clap::Parser;
use fake_amocrm::cli::{seed, Args};
use fake_amocrm::{FakeAmo, FakeConfig};
use tokio::sync::oneshot;

/// A fake AmoCRM serving until dropped.
pub struct RunningFake {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RunningFake {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RunningFake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The account `amosync-fake-amocrm <flags>` would serve, without its per-request log
/// lines. Panics when the flags do not parse or the address cannot be bound.
pub fn start(flags: &[&str]) -> RunningFake {
    let argv = std::iter::once("amosync-fake-amocrm").chain(flags.iter().copied());
    let args = Args::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("the fake AmoCRM's flags {flags:?}: {e}"));
    let config = FakeConfig {
        log_to_stdout: false,
        ..args.config()
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the fake AmoCRM");
        runtime.block_on(async move {
            let fake = match FakeAmo::bind(config, addr).await {
                Ok(fake) => fake,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("bind {addr}: {e}")));
                    return;
                }
            };
            seed(&fake, args.seed_contacts);
            let _ = ready_tx.send(Ok(fake.base_url()));
            let _ = stop_rx.await;
            fake.stop().await;
        });
    });
    let base_url = ready_rx
        .recv()
        .unwrap_or_else(|_| Err("its thread ended before it listened".to_owned()))
        .unwrap_or_else(|e| panic!("start the fake AmoCRM: {e}"));
    let port = url::Url::parse(&base_url)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or_else(|| panic!("no port in the fake's address {base_url}"));
    RunningFake {
        port,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}
