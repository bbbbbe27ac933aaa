//! `API_TOKENS`: the API clients, each a name (for logs), the scopes it holds and its
//! bearer token.
//!
//! `name:scope1+scope2:token` names the scopes. The older forms `name:token` and a bare
//! `token` hold [`LEGACY_SCOPES`], `write` only: the earlier Node service's clients
//! (web forms, partners) only ever posted records, and a token that can read every
//! contact or unsubscribe the webhook must be granted that on purpose. A deployment
//! whose client also reads or administers gets `403 insufficient_scope` naming the
//! missing scope (nothing is lost: posting still works) instead of every form token
//! silently staying an admin token.

use std::fmt;

use subtle::ConstantTimeEq;

use super::{Secret, SettingsError};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Post contacts and leads (`POST /api/v1/contacts`, `/api/v1/leads`, the drop-in routes).
    Write,
    /// Read the mirror's contacts and leads (personal data, deleted ones included).
    Read,
    /// The outbox (list and retry sync jobs) and amosync's webhook subscription.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Write, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Write => 1,
            Scope::Read => 2,
            Scope::Admin => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| format!("`{raw}` is not a scope (write, read or admin)"))
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

/// What a token written without scopes holds (see the module's documentation).
pub const LEGACY_SCOPES: Scopes = Scopes(1);

impl Scopes {
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |bits, scope| bits | scope.bit()))
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

/// `write+read`, as `API_TOKENS` writes it.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join("+"))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// One API client: a name for logs, what it may do, and the bearer token it presents.
#[derive(Debug, Clone)]
pub struct ApiClientToken {
    pub client_id: String,
    pub scopes: Scopes,
    /// Written without scopes (`name:token` or `token`): it holds `LEGACY_SCOPES`.
    pub legacy: bool,
    pub token: Secret,
}

/// The configured `API_TOKENS`, and which client presents a token.
pub struct ApiTokens(Vec<ApiClientToken>);

/// The client a request's token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub scopes: Scopes,
}

impl ApiTokens {
    pub fn new(tokens: Vec<ApiClientToken>) -> Self {
        ApiTokens(tokens)
    }

    /// The client owning `Authorization: Bearer <token>`. Every configured token
    /// is compared in constant time, so timing tells nothing about which matched.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Client> {
        let presented = authorization?.trim();
        let (scheme, token) = presented.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim().as_bytes();
        let mut owner = None;
        for candidate in &self.0 {
            if bool::from(candidate.token.expose().as_bytes().ct_eq(token)) {
                owner = Some(Client {
                    id: candidate.client_id.clone(),
                    scopes: candidate.scopes,
                });
            }
        }
        owner
    }
}

/// Tokens shorter than this are refused: a bearer token is all a client needs.
pub const MIN_TOKEN_CHARS: usize = 16;

/// One comma-separated entry of `API_TOKENS`; `index` names unnamed tokens.
pub(super) fn parse_entry(entry: &str, index: usize) -> Result<ApiClientToken, SettingsError> {
    let invalid = |reason: String| SettingsError::Invalid {
        name: "API_TOKENS",
        reason,
    };
    let parts: Vec<&str> = entry.splitn(3, ':').map(str::trim).collect();
    let (client_id, scopes, token) = match parts.as_slice() {
        [token] => (format!("client-{}", index + 1), None, *token),
        [name, token] => ((*name).to_owned(), None, *token),
        [name, scopes, token] => ((*name).to_owned(), Some(*scopes), *token),
        _ => return Err(invalid("an empty entry".into())),
    };
    let scopes = match scopes {
        None => None,
        Some(list) => {
            let parsed = list
                .split('+')
                .map(str::parse)
                .collect::<Result<Vec<Scope>, String>>()
                // The rejected part is not echoed: in a token holding a `:` it is
                // part of the token.
                .map_err(|_| {
                    invalid(format!(
                        "{client_id}: scopes are write, read and admin, joined by + \
                         (name:scope1+scope2:token; a token containing `:` needs its scopes \
                         written before it)"
                    ))
                })?;
            Some(Scopes::of(&parsed))
        }
    };
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(invalid(format!(
            "the token of {client_id} is shorter than {MIN_TOKEN_CHARS} characters"
        )));
    }
    Ok(ApiClientToken {
        client_id,
        scopes: scopes.unwrap_or(LEGACY_SCOPES),
        legacy: scopes.is_none(),
        token: Secret::new(token),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ApiTokens {
        ApiTokens::new(vec![
            ApiClientToken {
                client_id: "forms".into(),
                scopes: LEGACY_SCOPES,
                legacy: true,
                token: Secret::new("aaaaaaaaaaaaaaaa"),
            },
            ApiClientToken {
                client_id: "partner".into(),
                scopes: Scopes::of(&[Scope::Read, Scope::Admin]),
                legacy: false,
                token: Secret::new("bbbbbbbbbbbbbbbb"),
            },
        ])
    }

    #[test]
    fn only_a_configured_bearer_token_identifies_a_client_and_its_scopes() {
        let t = tokens();
        let partner = t
            .authenticate(Some("Bearer bbbbbbbbbbbbbbbb"))
            .expect("partner");
        assert_eq!(partner.id, "partner");
        assert!(partner.scopes.contains(Scope::Admin) && !partner.scopes.contains(Scope::Write));
        let forms = t
            .authenticate(Some("bearer aaaaaaaaaaaaaaaa"))
            .expect("forms");
        assert_eq!((forms.id.as_str(), forms.scopes), ("forms", LEGACY_SCOPES));
        assert_eq!(t.authenticate(Some("Bearer aaaaaaaaaaaaaaa")), None);
        assert_eq!(t.authenticate(Some("Basic aaaaaaaaaaaaaaaa")), None);
        assert_eq!(t.authenticate(Some("aaaaaaaaaaaaaaaa")), None);
        assert_eq!(t.authenticate(None), None);
    }

    #[test]
    fn scopes_are_named_between_the_client_and_its_token() {
        let t = parse_entry("crm:read+admin:0123456789abcdef0123", 0).expect("valid");
        assert_eq!(t.client_id, "crm");
        assert_eq!(t.token.expose(), "0123456789abcdef0123");
        assert!(!t.legacy);
        assert!(t.scopes.contains(Scope::Read) && t.scopes.contains(Scope::Admin));
        assert!(!t.scopes.contains(Scope::Write));
        assert_eq!(t.scopes.to_string(), "read+admin");
        let all = parse_entry("ops:Write+READ+admin:0123456789abcdef0123", 0).expect("valid");
        assert_eq!(all.scopes, Scopes::of(&Scope::ALL));
    }

    #[test]
    fn tokens_written_without_scopes_may_only_write() {
        for (entry, name) in [
            ("forms:0123456789abcdef0123", "forms"),
            ("0123456789abcdef0123", "client-3"),
        ] {
            let t = parse_entry(entry, 2).expect("valid");
            assert_eq!(t.client_id, name);
            assert!(t.legacy);
            assert_eq!(t.scopes, LEGACY_SCOPES);
            assert_eq!(t.scopes.iter().collect::<Vec<_>>(), [Scope::Write]);
        }
    }

    #[test]
    fn unknown_scopes_and_short_tokens_are_refused_with_the_reason() {
        let reason = |entry: &str| match parse_entry(entry, 0) {
            Err(SettingsError::Invalid { name, reason }) => {
                assert_eq!(name, "API_TOKENS");
                reason
            }
            other => panic!("{entry}: expected an error, got {other:?}"),
        };
        assert!(reason("crm:read+delete:0123456789abcdef0123").contains("crm: scopes are"));
        assert!(reason("crm::0123456789abcdef0123").contains("crm: scopes are"));
        assert!(reason("crm:read:short").contains("shorter than 16"));
        // No part of the entry but the name is echoed: a legacy token may contain `:`.
        let echoed = reason("crm:abcdefgh:0123456789abcdef0123");
        assert!(!echoed.contains("abcdefgh") && !echoed.contains("0123456789"));
    }
}
