//! Stopping gracefully: SIGTERM or SIGINT marks the service draining, `/ready` turns
//! 503, then the listener closes and in-flight requests finish.

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;

use crate::lifecycle::Lifecycle;

/// Between `/ready` turning 503 and the listener closing.
const READY_GRACE: Duration = Duration::from_secs(1);

/// What SIGTERM does, for callers that stop the service themselves.
pub struct ShutdownTrigger {
    pub(super) handle: actix_web::dev::ServerHandle,
    pub(super) lifecycle: Arc<Lifecycle>,
    pub(super) logger: Logger,
}

impl ShutdownTrigger {
    /// Marks the service draining (`/ready` answers 503 and load balancers move away),
    /// waits `READY_GRACE`, then stops accepting connections and lets in-flight
    /// requests finish within `SHUTDOWN_TIMEOUT`.
    pub async fn shutdown(self) {
        slog::info!(self.logger, "shutting down: draining requests and workers");
        self.lifecycle.start_draining();
        tokio::time::sleep(READY_GRACE).await;
        self.handle.stop(true).await;
    }
}

/// SIGTERM (`docker stop`) and SIGINT (Ctrl-C), installed when made.
pub(super) struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(super) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    pub(super) async fn recv(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(self.term) => {}
                _ = next(self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
