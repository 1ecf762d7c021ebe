//! The API key format: `capk_<key id>_<secret>_<checksum>`.
//!
//! The key id (12 base62 characters) is public: it names the key in lists and logs.
//! The secret (32 base62 characters, about 190 random bits) is shown once and kept
//! only as the sha256 digest of the whole key. The checksum (CRC32 of everything
//! before it, 6 base62 characters) lets secret scanners and the node tell a mistyped
//! or truncated key from a wrong one without reading the database.

use rand::Rng;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "capk_";
const KEY_ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented key was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error(
        "the API key is malformed: expected `capk_` followed by a 12-character key id, a 32-character secret and a 6-character checksum, separated by `_`"
    )]
    Malformed,
    #[error("the API key fails its checksum: it was mistyped or cut short; copy it again")]
    Checksum,
}

/// A key that passed its format and checksum: its public id and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub key_id: String,
    pub digest: [u8; 32],
}

/// A fresh key: the text to show once, and what to keep.
pub struct NewKey {
    pub text: String,
    pub key_id: String,
    pub digest: [u8; 32],
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

pub fn generate() -> NewKey {
    let key_id = random_base62(KEY_ID_LEN);
    let secret = random_base62(SECRET_LEN);
    let body = format!("{PREFIX}{key_id}_{secret}");
    let text = format!("{body}_{}", checksum(&body));
    NewKey {
        digest: digest(&text),
        key_id,
        text,
    }
}

/// Checks a presented key's shape and checksum.
pub fn parse(text: &str) -> Result<PresentedKey, KeyFormatError> {
    let rest = text.strip_prefix(PREFIX).ok_or(KeyFormatError::Malformed)?;
    let mut parts = rest.split('_');
    let (Some(key_id), Some(secret), Some(sum), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(KeyFormatError::Malformed);
    };
    let well_formed = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    if !(well_formed(key_id, KEY_ID_LEN)
        && well_formed(secret, SECRET_LEN)
        && well_formed(sum, CHECKSUM_LEN))
    {
        return Err(KeyFormatError::Malformed);
    }
    let body = &text[..text.len() - CHECKSUM_LEN - 1];
    if checksum(body) != sum {
        return Err(KeyFormatError::Checksum);
    }
    Ok(PresentedKey {
        key_id: key_id.to_owned(),
        digest: digest(text),
    })
}

pub fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Compares digests in constant time.
pub fn same_digest(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_base62(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
        .collect()
}

/// CRC32 (IEEE) of `text` in base62, fixed width. Written out rather than taken from a
/// crate: eight lines, and the format must never change under us.
pub fn checksum(text: &str) -> String {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in text.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut n = u64::from(!crc);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_ieee_one() {
        // CRC32("123456789") = 0xCBF43926 = 3421780262.
        let mut n = 3_421_780_262u64;
        let mut expected = [b'0'; CHECKSUM_LEN];
        for slot in expected.iter_mut().rev() {
            *slot = BASE62[(n % 62) as usize];
            n /= 62;
        }
        assert_eq!(checksum("123456789").as_bytes(), expected);
    }

    #[test]
    fn generated_keys_parse_back_to_their_id_and_digest() {
        let key = generate();
        assert_eq!(key.text.len(), 5 + 12 + 1 + 32 + 1 + 6);
        let parsed = parse(&key.text).unwrap();
        assert_eq!(parsed.key_id, key.key_id);
        assert_eq!(parsed.digest, key.digest);
        assert_ne!(generate().text, key.text);
        assert!(!format!("{key:?}").contains(&key.text[18..50]));
    }

    #[test]
    fn mistyped_keys_fail_their_checksum_and_odd_ones_are_malformed() {
        let key = generate().text;
        let mut typo = key.clone().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(parse(&typo), Err(KeyFormatError::Checksum));
        for bad in [
            "",
            "capk_",
            &key[..key.len() - 1],
            &format!("{key}_x"),
            &key.replacen("capk_", "capx_", 1),
            &key.replacen('_', "-", 2),
        ] {
            assert_eq!(parse(bad), Err(KeyFormatError::Malformed), "{bad}");
        }
    }

    #[test]
    fn the_key_in_docs_security_md_is_well_formed() {
        let key = parse("capk_7kQ2mX9pLr4T_Zf3a9QvN0bWc6YtR1hKs8LdM2uPe5Xjq_0ssvvP").unwrap();
        assert_eq!(key.key_id, "7kQ2mX9pLr4T");
    }

    #[test]
    fn digests_compare_exactly() {
        assert!(same_digest(&digest("a"), &digest("a")));
        assert!(!same_digest(&digest("a"), &digest("b")));
        assert!(!same_digest(&digest("a"), &[]));
    }
}
