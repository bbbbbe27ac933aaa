//! `SyncStatus`: where a mirrored row stands with AmoCRM. The database keeps it as
//! text (`sync_status`); it is parsed when a row is read, so a value this code does
//! not know is an error rather than quietly read as one of the known ones.

use std::fmt;
use std::str::FromStr;

/// Where a row stands with AmoCRM. Serialises as the same text the database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Accepted locally; AmoCRM has not confirmed it yet.
    Pending,
    /// AmoCRM confirmed it: the row has its `amocrm_id`.
    Synced,
}

impl SyncStatus {
    /// Every status, in the order a record moves through them.
    pub const ALL: [SyncStatus; 2] = [SyncStatus::Pending, SyncStatus::Synced];

    /// The text stored in `sync_status` and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Pending => "pending",
            SyncStatus::Synced => "synced",
        }
    }
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored `sync_status` this code does not know (a newer schema, a hand edit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sync status `{0}`")]
pub struct UnknownSyncStatus(pub String);

impl FromStr for SyncStatus {
    type Err = UnknownSyncStatus;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        SyncStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or_else(|| UnknownSyncStatus(raw.to_owned()))
    }
}

/// How Diesel reads the column (`deserialize_as = String`).
impl TryFrom<String> for SyncStatus {
    type Error = UnknownSyncStatus;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::{SyncStatus, UnknownSyncStatus};

    #[test]
    fn every_stored_value_parses_to_its_status() {
        for (raw, status) in [
            ("pending", SyncStatus::Pending),
            ("synced", SyncStatus::Synced),
        ] {
            assert_eq!(raw.parse::<SyncStatus>(), Ok(status), "{raw}");
            assert_eq!(SyncStatus::try_from(raw.to_owned()), Ok(status), "{raw}");
            assert_eq!(status.as_str(), raw);
        }
    }

    #[test]
    fn every_status_survives_a_round_trip_through_its_text() {
        for status in SyncStatus::ALL {
            assert_eq!(status.as_str().parse::<SyncStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
        }
    }

    #[test]
    fn an_unknown_value_is_refused_not_read_as_pending() {
        for raw in [
            "", "failed", "Synced", "PENDING", " pending", "synced ", "done",
        ] {
            assert_eq!(
                raw.parse::<SyncStatus>(),
                Err(UnknownSyncStatus(raw.to_owned())),
                "{raw:?}"
            );
        }
        let refused = "failed".parse::<SyncStatus>().expect_err("unknown");
        assert_eq!(refused.to_string(), "unknown sync status `failed`");
    }

    #[test]
    fn the_api_shows_the_stored_text() {
        for status in SyncStatus::ALL {
            let json = serde_json::to_string(&status).expect("serialise");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }
}
