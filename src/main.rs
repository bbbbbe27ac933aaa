//! The `amosync` binary: `serve` (the default) runs the service; the other commands
//! (migrate, check-config, sync, auth, webhooks, db) are in `amosync::cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    amosync::host::tune_allocator();
    amosync::cli::run()
}
