//! `CliError`: why a command did not finish, and the exit status that says so.

use crate::amo::AmoError;
use crate::repositories::RepoError;
use crate::services::ServiceError;
use crate::settings::SettingsError;
use crate::startup::StartupError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A required variable is missing or one is invalid: nothing was attempted.
    #[error("configuration error: {0}")]
    Config(#[from] SettingsError),
    /// The command cannot run as given (clap reports what it can see itself).
    #[error("{0}")]
    Usage(String),
    /// The database did not answer, refused the account, or a query failed.
    #[error("{0}")]
    Database(#[from] RepoError),
    /// The service could not start.
    #[error("{0}")]
    Startup(#[from] StartupError),
    /// The AmoCRM client could not be built, or AmoCRM refused.
    #[error("AmoCRM: {0}")]
    Amo(#[from] AmoError),
    #[error("{0}")]
    Service(#[from] ServiceError),
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A condition the command cannot get past, said in words.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// 2 for wrong usage or configuration (like clap's own usage errors), 1 for a
    /// failure while running.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_configuration_exit_2_and_run_time_failures_1() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(
            CliError::Config(SettingsError::Missing("API_TOKENS")).exit_code(),
            2
        );
        assert_eq!(
            CliError::Database(RepoError::Unavailable("down".into())).exit_code(),
            1
        );
        assert_eq!(CliError::Failed("busy".into()).exit_code(), 1);
    }
}
