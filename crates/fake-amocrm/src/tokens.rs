//! The account's OAuth tokens and authorization codes: which are live, which were used.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

pub(crate) struct RefreshToken {
    pub live: bool,
    /// The access token issued with it, which a refresh retires.
    pub access: String,
}

#[derive(Default)]
pub(crate) struct Tokens {
    /// Access token → when it stops working.
    pub access: HashMap<String, Instant>,
    pub refresh: HashMap<String, RefreshToken>,
    pub codes: HashSet<String>,
    pub used_codes: HashSet<String>,
    pub refreshes: usize,
}

impl Tokens {
    pub fn new(preset_codes: &[String]) -> Self {
        Tokens {
            codes: preset_codes.iter().cloned().collect(),
            ..Tokens::default()
        }
    }

    /// A fresh single-use authorization code, as the user's consent would produce.
    pub fn issue_code(&mut self) -> String {
        let code = format!("def50200{}", uuid::Uuid::new_v4().simple());
        self.codes.insert(code.clone());
        code
    }

    /// Every access and refresh token issued so far, live or not.
    pub fn issued(&self) -> Vec<String> {
        self.access
            .keys()
            .chain(self.refresh.keys())
            .cloned()
            .collect()
    }

    pub fn is_live(&self, access: &str, now: Instant) -> bool {
        self.access.get(access).is_some_and(|expiry| now < *expiry)
    }
}
