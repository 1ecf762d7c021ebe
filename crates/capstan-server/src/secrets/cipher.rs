//! AES-256-GCM with the associated data of a secret row or of a key-check value.

use aes_gcm::{
    Aes256Gcm, Key, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use rand::RngCore as _;
use uuid::Uuid;

use crate::config::MasterKey;

/// 96 bits: GCM's native nonce size. Random nonces are safe for far more values than a
/// cluster stores under one key version (the bound is around 2^32 encryptions).
pub(crate) const NONCE_LEN: usize = 12;

/// Bound to a secret's ciphertext with the row's id, so it opens only in that row.
const SECRET_DOMAIN: &[u8] = b"capstan/secret/v1";

/// The key-check value: this constant, encrypted under a version's key, proves that a
/// key is that version's without storing anything derived from the key alone.
const KEY_CHECK_DOMAIN: &[u8] = b"capstan/key-check/v1";
const KEY_CHECK_PLAINTEXT: &[u8] = b"capstan master key check";

/// A nonce and the ciphertext (with its tag) it produced.
pub(crate) struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// One key version's cipher.
pub(crate) struct KeyCipher(Aes256Gcm);

impl KeyCipher {
    pub(crate) fn new(key: &MasterKey) -> Self {
        Self(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.bytes())))
    }

    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        // ThreadRng is a CSPRNG seeded from the operating system.
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encrypts any input shorter than 64 GiB");
        Sealed { nonce, ciphertext }
    }

    /// The plaintext, or `None` if the ciphertext does not authenticate under this key,
    /// nonce and associated data.
    pub(crate) fn open(
        &self,
        aad: &[u8],
        nonce: &[u8; NONCE_LEN],
        ciphertext: &[u8],
    ) -> Option<Vec<u8>> {
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }

    /// A fresh key-check value for this key.
    pub(crate) fn key_check(&self) -> Sealed {
        self.seal(KEY_CHECK_DOMAIN, KEY_CHECK_PLAINTEXT)
    }

    /// Whether a stored key-check value was made with this key.
    pub(crate) fn matches(&self, nonce: &[u8], ciphertext: &[u8]) -> bool {
        let Ok(nonce) = <&[u8; NONCE_LEN]>::try_from(nonce) else {
            return false;
        };
        self.open(KEY_CHECK_DOMAIN, nonce, ciphertext)
            .is_some_and(|plain| plain == KEY_CHECK_PLAINTEXT)
    }
}

/// The associated data of the secret in row `id`.
pub(crate) fn secret_aad(id: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SECRET_DOMAIN.len() + 1 + 16);
    aad.extend_from_slice(SECRET_DOMAIN);
    // The separator keeps the label and the id from running into each other.
    aad.push(0);
    aad.extend_from_slice(id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> KeyCipher {
        KeyCipher::new(&MasterKey::from_base64(&base64_of([byte; 32])).unwrap())
    }

    fn base64_of(bytes: [u8; 32]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn a_value_opens_only_with_its_key_and_its_row() {
        let k1 = key(1);
        let row = Uuid::now_v7();
        let sealed = k1.seal(&secret_aad(row), b"hunter2");
        assert_eq!(
            k1.open(&secret_aad(row), &sealed.nonce, &sealed.ciphertext)
                .as_deref(),
            Some(&b"hunter2"[..])
        );
        assert!(
            k1.open(
                &secret_aad(Uuid::now_v7()),
                &sealed.nonce,
                &sealed.ciphertext
            )
            .is_none(),
            "another row's identity must not open it"
        );
        assert!(
            key(2)
                .open(&secret_aad(row), &sealed.nonce, &sealed.ciphertext)
                .is_none(),
            "another key must not open it"
        );
        let mut tampered = sealed.ciphertext.clone();
        tampered[0] ^= 1;
        assert!(
            k1.open(&secret_aad(row), &sealed.nonce, &tampered)
                .is_none()
        );
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn every_seal_draws_a_fresh_nonce() {
        let k = key(3);
        let row = Uuid::now_v7();
        let a = k.seal(&secret_aad(row), b"same");
        let b = k.seal(&secret_aad(row), b"same");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn a_key_check_value_recognises_only_its_key() {
        let check = key(4).key_check();
        assert!(key(4).matches(&check.nonce, &check.ciphertext));
        assert!(!key(5).matches(&check.nonce, &check.ciphertext));
        assert!(!key(4).matches(&check.nonce[..11], &check.ciphertext));
        // A secret sealed under the key is not a key-check value.
        let secret = key(4).seal(&secret_aad(Uuid::nil()), KEY_CHECK_PLAINTEXT);
        assert!(!key(4).matches(&secret.nonce, &secret.ciphertext));
    }
}
