//! Tokens: 160 random bits behind a readable prefix that says what kind of secret
//! leaked, stored only as a sha256 digest. (A slow hash would add nothing: there is
//! no dictionary to guess a random token from.)

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Registration,
    Agent,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Registration => "capreg_",
            Self::Agent => "capagt_",
        }
    }
}

/// A fresh token: the secret to hand out once, and what to keep.
#[derive(Debug)]
pub struct NewToken {
    pub secret: String,
    pub digest: [u8; 32],
    /// Enough of the secret to recognise it in a list, too little to use it.
    pub shown_prefix: String,
}

pub fn generate(kind: TokenKind) -> NewToken {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes));
    NewToken {
        digest: digest(&secret),
        shown_prefix: secret[..kind.prefix().len() + 4].to_owned(),
        secret,
    }
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_kept_as_digests() {
        let a = generate(TokenKind::Agent);
        let b = generate(TokenKind::Agent);
        assert!(a.secret.starts_with("capagt_"));
        assert_eq!(a.secret.len(), "capagt_".len() + 27);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.digest, digest(&a.secret));
        assert_eq!(a.shown_prefix, a.secret[..11]);
        assert!(
            generate(TokenKind::Registration)
                .secret
                .starts_with("capreg_")
        );
    }
}
