//! Random bearer secrets (API tokens and session tokens) and their SHA-256 digests.
//!
//! Both are 32 random bytes in unpadded base64url behind a prefix that says what they
//! are (`mcapi_`, `mcses_`), so that a leaked one is recognisable by secret scanners
//! and by an operator reading a log. They carry 256 bits of entropy, so a fast hash
//! is enough to store them: only the SHA-256 digest is kept, in the users file for
//! API tokens and in memory for sessions, and a stolen file or core dump gives no
//! usable token.

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};

/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "mcapi_";
/// Prefix of session tokens.
pub const SESSION_TOKEN_PREFIX: &str = "mcses_";

/// A SHA-256 digest.
pub type Digest256 = [u8; 32];

/// A new API token.
pub fn new_api_token() -> String {
    random_token(API_TOKEN_PREFIX)
}

/// A new session token.
pub fn new_session_token() -> String {
    random_token(SESSION_TOKEN_PREFIX)
}

fn random_token(prefix: &str) -> String {
    // ThreadRng is a CSPRNG (ChaCha) seeded and periodically reseeded from the OS.
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", Base64UrlUnpadded::encode_string(&bytes))
}

/// The SHA-256 digest of `text`.
pub fn sha256(text: &str) -> Digest256 {
    Sha256::digest(text.as_bytes()).into()
}

/// Lowercase hex of a digest, as the users file stores it.
pub fn to_hex(digest: &Digest256) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The digest written as 64 lowercase hex digits, or `None`.
pub fn from_hex(text: &str) -> Option<Digest256> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_base64url() {
        let (a, b) = (new_api_token(), new_api_token());
        assert_ne!(a, b);
        let body = a.strip_prefix(API_TOKEN_PREFIX).unwrap();
        assert_eq!(body.len(), 43, "32 bytes in unpadded base64url");
        assert!(
            body.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(Base64UrlUnpadded::decode_vec(body).unwrap().len(), 32);
        assert!(new_session_token().starts_with(SESSION_TOKEN_PREFIX));
    }

    #[test]
    fn digests_round_trip_through_hex() {
        // The SHA-256 test vector of "abc".
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let digest = sha256("abc");
        assert_eq!(to_hex(&digest), hex);
        assert_eq!(from_hex(hex), Some(digest));
        assert_eq!(from_hex(&hex.to_uppercase()), None, "lowercase only");
        assert_eq!(from_hex(&hex[1..]), None);
        assert_eq!(from_hex(&format!("{}g", &hex[1..])), None);
    }
}
