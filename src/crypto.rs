//! Encryption at rest of the AmoCRM OAuth tokens (`amo_tokens`): a copy of the
//! database alone must not give access to the AmoCRM account.
//!
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): authenticated, and its
//! 24-byte nonces can be drawn at random for every value without a counter to keep.
//! A stored value is `enc:v1:<key id>:<base64(nonce ‖ ciphertext)>`; the key id (the
//! start of a SHA-256 of the key) says which key sealed it, so a key can be rotated:
//! `TOKEN_ENCRYPTION_KEY` seals, `TOKEN_ENCRYPTION_KEY_PREVIOUS` still opens, and the
//! store rewrites what the previous key (or nobody: rows from before encryption)
//! sealed. The column's name is the associated data, so a value moved to another
//! column does not open.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const PREFIX: &str = "enc:v1:";
const NONCE_BYTES: usize = 24;
pub const KEY_BYTES: usize = 32;
/// How to make a key, for every message that asks for one.
pub const KEY_HINT: &str = "32 random bytes in base64, e.g. from: openssl rand -base64 32";

/// A 32-byte key and its id. `Debug` shows the id only.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({})", self.id)
    }
}

impl EncryptionKey {
    /// A key written in base64 (with or without padding), 32 bytes once decoded.
    pub fn from_base64(raw: &str) -> Result<EncryptionKey, String> {
        let raw = raw.trim();
        let bytes = STANDARD
            .decode(raw)
            .or_else(|_| STANDARD_NO_PAD.decode(raw))
            .map_err(|_| format!("not base64; use {KEY_HINT}"))?;
        if bytes.len() != KEY_BYTES {
            return Err(format!(
                "{} bytes instead of {KEY_BYTES}; use {KEY_HINT}",
                bytes.len()
            ));
        }
        let digest = Sha256::new()
            .chain_update(b"amosync token key\0")
            .chain_update(&bytes)
            .finalize();
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(EncryptionKey {
            id,
            cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)),
        })
    }

    /// Eight hex digits naming the key in stored values, logs and messages.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// How a stored value was sealed, once opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// By the current key: nothing to do.
    Current,
    /// By the previous key, or not at all (a row from before encryption): rewrite it.
    Outdated,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "sealed with key {0}, which is neither TOKEN_ENCRYPTION_KEY nor \
         TOKEN_ENCRYPTION_KEY_PREVIOUS; set the key it was sealed with as \
         TOKEN_ENCRYPTION_KEY_PREVIOUS, or run `amosync auth exchange` again"
    )]
    UnknownKey(String),
    #[error("a stored value does not open with key {0} (altered, or moved from another column)")]
    Corrupt(String),
}

/// The current key (sealing and opening) and optionally the previous one (opening).
#[derive(Debug, Clone)]
pub struct TokenCipher {
    current: EncryptionKey,
    previous: Option<EncryptionKey>,
}

impl TokenCipher {
    pub fn new(current: EncryptionKey, previous: Option<EncryptionKey>) -> TokenCipher {
        TokenCipher { current, previous }
    }

    pub fn current_key_id(&self) -> &str {
        self.current.id()
    }

    /// `plain` sealed with the current key, for `column`.
    pub fn seal(&self, column: &str, plain: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: column.as_bytes(),
        };
        // Encryption fails only for messages of gigabytes; a token is not one.
        let sealed = self
            .current
            .cipher
            .encrypt(&nonce, payload)
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.current.id, STANDARD.encode(bytes))
    }

    /// The plain value stored in `column`, and whether it should be sealed again.
    /// A value without the prefix was stored before encryption and is taken as is.
    pub fn open(&self, column: &str, stored: &str) -> Result<(String, Sealed), CryptoError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok((stored.to_owned(), Sealed::Outdated));
        };
        let (id, data) = rest.split_once(':').unwrap_or((rest, ""));
        let (key, state) = if id == self.current.id {
            (&self.current, Sealed::Current)
        } else {
            match &self.previous {
                Some(previous) if id == previous.id => (previous, Sealed::Outdated),
                _ => return Err(CryptoError::UnknownKey(id.to_owned())),
            }
        };
        let corrupt = || CryptoError::Corrupt(key.id.clone());
        let bytes = STANDARD.decode(data).map_err(|_| corrupt())?;
        if bytes.len() < NONCE_BYTES {
            return Err(corrupt());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: sealed,
            aad: column.as_bytes(),
        };
        let plain = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| corrupt())?;
        let plain = String::from_utf8(plain).map_err(|_| corrupt())?;
        Ok((plain, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=";
    const KEY_B: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn key(raw: &str) -> EncryptionKey {
        EncryptionKey::from_base64(raw).expect("a valid key")
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_column() {
        let cipher = TokenCipher::new(key(KEY_A), None);
        let sealed = cipher.seal("access_token", "eyJ-the-access-token");
        assert!(sealed.starts_with(&format!("enc:v1:{}:", key(KEY_A).id())));
        assert!(!sealed.contains("the-access-token"));
        assert_eq!(
            cipher.open("access_token", &sealed),
            Ok(("eyJ-the-access-token".to_owned(), Sealed::Current))
        );
        assert_ne!(
            sealed,
            cipher.seal("access_token", "eyJ-the-access-token"),
            "fresh nonce"
        );
        assert!(matches!(
            cipher.open("refresh_token", &sealed),
            Err(CryptoError::Corrupt(_))
        ));
        let at = sealed.len() - 6;
        let flipped = if &sealed[at..=at] == "A" { "B" } else { "A" };
        let mut altered = sealed.clone();
        altered.replace_range(at..=at, flipped);
        assert!(matches!(
            cipher.open("access_token", &altered),
            Err(CryptoError::Corrupt(_))
        ));
        let stranger = TokenCipher::new(key(KEY_B), None);
        assert!(matches!(
            stranger.open("access_token", &sealed),
            Err(CryptoError::UnknownKey(id)) if id == key(KEY_A).id()
        ));
    }

    #[test]
    fn the_previous_key_and_plaintext_still_open_and_ask_to_be_sealed_again() {
        let old = TokenCipher::new(key(KEY_A), None);
        let sealed_by_old = old.seal("refresh_token", "def502-refresh");
        let rotated = TokenCipher::new(key(KEY_B), Some(key(KEY_A)));
        assert_eq!(
            rotated.open("refresh_token", &sealed_by_old),
            Ok(("def502-refresh".to_owned(), Sealed::Outdated))
        );
        assert_eq!(
            rotated.open("refresh_token", "def502-plain"),
            Ok(("def502-plain".to_owned(), Sealed::Outdated))
        );
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(EncryptionKey::from_base64(KEY_B).is_ok(), "unpadded");
        for wrong in ["", "not base64!", "c2hvcnQ=", &STANDARD.encode([7u8; 33])] {
            let err = EncryptionKey::from_base64(wrong).expect_err(wrong);
            assert!(err.contains("openssl rand -base64 32"), "{err}");
        }
        assert_ne!(key(KEY_A).id(), key(KEY_B).id());
        assert_eq!(key(KEY_A).id().len(), 8);
        assert!(!format!("{:?}", key(KEY_A)).contains(KEY_A));
    }
}
