//! Page tokens: a read's [`Cursor`] plus the instant its window is anchored
//! to, signed with HMAC-SHA256 over the query it belongs to.
//!
//! ```text
//! token = base64url( version | anchor_ms | partition | skip | state_len | state | mac )
//! mac   = HMAC-SHA256(secret, scope | payload)      scope = route + its path parameters
//! ```
//!
//! A token changed by one bit, made up, cut short, or taken from another
//! query (another player, country or window) fails the MAC check and is a
//! 400. The secret comes from configuration so that several API processes
//! accept each other's tokens; without one, a random per-process secret is
//! used.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sessionlake_cassandra::read::Cursor;
use sha2::Sha256;

use crate::error::ApiError;

/// Format version of the token payload. 2: the partition index counts the
/// day partitions of serving model 2 (a version-1 token counted hours and
/// is refused, not misread).
const TOKEN_VERSION: u8 = 2;

/// Bytes of the MAC at the end of a token.
const MAC_BYTES: usize = 32;

/// Longest token accepted, in characters (long before decoding).
pub const MAX_TOKEN_CHARS: usize = 2048;

/// Where the next page starts, and the window's anchor instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePosition {
    /// Epoch milliseconds the query's window is anchored to (the service
    /// clock when the first page was read), so later pages see the same window.
    pub anchor_ms: i64,
    /// Where the read resumes.
    pub cursor: Cursor,
}

/// Signs and checks page tokens.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(<secret>)")
    }
}

impl TokenSigner {
    /// A signer with the given secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self { secret: secret.into() }
    }

    /// A signer with a random secret (tokens valid in this process only).
    pub fn random() -> Self {
        let mut secret = vec![0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random source works");
        Self { secret }
    }

    fn mac(&self, scope: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    /// The token for `position` within the query named by `scope`.
    pub fn sign(&self, scope: &str, position: &PagePosition) -> String {
        let state = position.cursor.state.as_deref().unwrap_or_default();
        let mut bytes = Vec::with_capacity(1 + 8 + 4 + 4 + 2 + state.len() + MAC_BYTES);
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(&position.anchor_ms.to_be_bytes());
        bytes.extend_from_slice(&position.cursor.partition.to_be_bytes());
        bytes.extend_from_slice(&position.cursor.skip.to_be_bytes());
        let has_state = position.cursor.state.is_some();
        let length = if has_state { state.len() as u16 + 1 } else { 0 };
        debug_assert!(state.len() < u16::MAX as usize);
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(state);
        let tag = self.mac(scope, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position a token names, if it is genuine and belongs to `scope`.
    pub fn verify(&self, scope: &str, token: &str) -> Result<PagePosition, ApiError> {
        let invalid = || {
            ApiError::bad_request(
                "page_token is not valid for this query (take it from next_page_token of the previous page)",
            )
        };
        if token.len() > MAX_TOKEN_CHARS {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| invalid())?;
        if bytes.len() < 1 + 8 + 4 + 4 + 2 + MAC_BYTES {
            return Err(invalid());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
        self.mac(scope, payload).verify_slice(tag).map_err(|_| invalid())?;
        // Genuine from here on: the layout is ours.
        if payload[0] != TOKEN_VERSION {
            return Err(invalid());
        }
        let anchor_ms = i64::from_be_bytes(payload[1..9].try_into().expect("8 bytes"));
        let partition = u32::from_be_bytes(payload[9..13].try_into().expect("4 bytes"));
        let skip = u32::from_be_bytes(payload[13..17].try_into().expect("4 bytes"));
        let length = u16::from_be_bytes(payload[17..19].try_into().expect("2 bytes")) as usize;
        let state = match length {
            0 => None,
            n if payload.len() == 19 + n - 1 => Some(payload[19..].to_vec()),
            _ => return Err(invalid()),
        };
        Ok(PagePosition { anchor_ms, cursor: Cursor { partition, state, skip } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> PagePosition {
        PagePosition {
            anchor_ms: 1_478_476_800_000,
            cursor: Cursor { partition: 3, state: Some(vec![1, 2, 3, 250]), skip: 7 },
        }
    }

    #[test]
    fn a_signed_token_verifies_to_the_same_position() {
        let signer = TokenSigner::new(*b"secret");
        let token = signer.sign("started/IT/3", &position());
        assert_eq!(signer.verify("started/IT/3", &token).unwrap(), position());
        let first_page = PagePosition { anchor_ms: 5, cursor: Cursor { partition: 1, state: None, skip: 0 } };
        let token = signer.sign("started/IT/3", &first_page);
        assert_eq!(signer.verify("started/IT/3", &token).unwrap(), first_page);
        let empty_state = PagePosition { anchor_ms: 5, cursor: Cursor { partition: 1, state: Some(vec![]), skip: 0 } };
        let token = signer.sign("started/IT/3", &empty_state);
        assert_eq!(signer.verify("started/IT/3", &token).unwrap(), empty_state);
    }

    #[test]
    fn a_token_of_another_query_or_secret_is_rejected() {
        let signer = TokenSigner::new(*b"secret");
        let token = signer.sign("started/IT/3", &position());
        assert_eq!(signer.verify("started/FR/3", &token).unwrap_err().status, 400);
        assert_eq!(signer.verify("started/IT/4", &token).unwrap_err().status, 400);
        assert!(TokenSigner::new(*b"other").verify("started/IT/3", &token).is_err());
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let signer = TokenSigner::new(*b"secret");
        let bytes = URL_SAFE_NO_PAD.decode(signer.sign("scope", &position())).unwrap();
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut forged = bytes.clone();
                forged[index] ^= 1 << bit;
                assert!(signer.verify("scope", &URL_SAFE_NO_PAD.encode(&forged)).is_err(), "byte {index} bit {bit}");
            }
        }
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let signer = TokenSigner::random();
        for token in ["", "x", "!!!!", "AAAA", &"A".repeat(5000), "a=b&c"] {
            assert_eq!(signer.verify("scope", token).unwrap_err().status, 400, "{token:.20}");
        }
    }
}
