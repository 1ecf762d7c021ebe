//! Sensitive values at rest: AES-256-GCM under the cluster's master key
//! (`CAPSTAN_MASTER_KEY`), one row of `secrets` per value.
//!
//! Each value gets a fresh random 96-bit nonce, and its row's id (behind a domain
//! label) as associated data, so a ciphertext copied into another row does not
//! decrypt. Each row names the key version it is under, so keys rotate while the
//! cluster runs: a node holds the keys of several versions (`CAPSTAN_MASTER_KEY` and
//! `CAPSTAN_MASTER_KEY_PREVIOUS`), seals under the active one, and opens any it holds.
//! [`startup`] checks a node's keys against the database before it serves;
//! [`Secrets::rotate_batch`] moves values to a new version.
//!
//! Neither plaintexts nor keys ever appear in an error, a log line or `Debug` output.

mod cipher;
pub mod startup;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use capstan_db::{DbError, secrets as db};
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use crate::config::MasterKey;
use cipher::KeyCipher;

pub use startup::{KeyCheck, check_keys};

/// How often a seal asks again for the active version when a rotation switched it
/// while the seal waited.
const ACTIVE_VERSION_ATTEMPTS: usize = 5;

/// Seals and opens sensitive values. Cheap to clone.
#[derive(Clone)]
pub struct Secrets {
    /// `None`: the node has no master key.
    keyring: Option<Arc<Keyring>>,
}

/// The keys a node holds, by version.
struct Keyring {
    ciphers: BTreeMap<i32, KeyCipher>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("key_versions", &self.key_versions())
            .finish_non_exhaustive()
    }
}

/// Why a value could not be sealed or opened. No variant carries a plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The node was started without `CAPSTAN_MASTER_KEY`.
    #[error(
        "this cluster has no CAPSTAN_MASTER_KEY: sensitive values cannot be stored; set it on every node (see docs/security.md)"
    )]
    NoMasterKey,
    /// The value, or the active version, is under a key this node was not given.
    #[error(
        "this node does not hold master key version {version}: give it that key in CAPSTAN_MASTER_KEY or CAPSTAN_MASTER_KEY_PREVIOUS and restart it (see docs/security.md)"
    )]
    KeyNotHeld { version: i32 },
    /// No version is active: the `master_keys` table was emptied behind the cluster's back.
    #[error(
        "no master key version is active; restart a node with CAPSTAN_MASTER_KEY to register one"
    )]
    NoActiveKey,
    /// Some of the ids asked for have no row.
    #[error("no secret has the id(s) {}", join_ids(.ids))]
    Missing { ids: Vec<Uuid> },
    /// The row's ciphertext does not authenticate under its key and identity.
    #[error(
        "secret {id} (key version {version}) does not decrypt: its ciphertext or nonce was altered, or copied from another row"
    )]
    Undecryptable { id: Uuid, version: i32 },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for SecretError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(error.into())
    }
}

fn join_ids(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one batch of a rotation did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RotatedBatch {
    /// Values re-encrypted and written back.
    pub rotated: u64,
}

impl Secrets {
    /// A node without a master key: every seal and open says so.
    pub fn without_key() -> Self {
        Self { keyring: None }
    }

    /// A node holding `keys` by version.
    pub(crate) fn with_keys(keys: BTreeMap<i32, MasterKey>) -> Self {
        let ciphers = keys
            .iter()
            .map(|(version, key)| (*version, KeyCipher::new(key)))
            .collect();
        Self {
            keyring: Some(Arc::new(Keyring { ciphers })),
        }
    }

    /// The key versions this node can decrypt, oldest first.
    pub fn key_versions(&self) -> Vec<i32> {
        self.keyring
            .as_ref()
            .map(|k| k.ciphers.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether this node can decrypt values under `version`.
    pub fn holds(&self, version: i32) -> bool {
        self.keyring
            .as_ref()
            .is_some_and(|k| k.ciphers.contains_key(&version))
    }

    fn keyring(&self) -> Result<&Keyring, SecretError> {
        self.keyring.as_deref().ok_or(SecretError::NoMasterKey)
    }

    /// Encrypts under the cluster's active key version and inserts a row into
    /// `secrets`; returns its id.
    ///
    /// Runs in a transaction of its own, or in a savepoint of the caller's: the active
    /// version stays share-locked until that transaction ends, so a rotation cannot
    /// switch versions between this seal and its commit and leave it behind.
    pub async fn seal(
        &self,
        conn: &mut PgConnection,
        plaintext: &str,
    ) -> Result<Uuid, SecretError> {
        let keyring = self.keyring()?;
        let mut tx = conn.begin().await?;
        let version = lock_active_version(&mut tx).await?;
        let cipher = keyring.get(version)?;
        let id = Uuid::now_v7();
        let sealed = cipher.seal(&cipher::secret_aad(id), plaintext.as_bytes());
        db::insert(&mut *tx, id, version, &sealed.nonce, &sealed.ciphertext).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Decrypts the rows of these ids (missing ids are an error).
    pub async fn open_many(
        &self,
        conn: &mut PgConnection,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, String>, SecretError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let keyring = self.keyring()?;
        let rows = db::get_many(&mut *conn, ids).await?;
        let mut opened = HashMap::with_capacity(rows.len());
        for row in &rows {
            opened.insert(row.id, keyring.open(row)?);
        }
        let mut missing: Vec<Uuid> = ids
            .iter()
            .filter(|id| !opened.contains_key(id))
            .copied()
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Err(SecretError::Missing { ids: missing });
        }
        Ok(opened)
    }

    /// Re-encrypts up to `limit` values that are not under `version` to it, in one
    /// transaction. Rows another transaction has locked are skipped for now; zero
    /// rotated with values left means they are all locked elsewhere at the moment.
    pub async fn rotate_batch(
        &self,
        conn: &mut PgConnection,
        version: i32,
        limit: i64,
    ) -> Result<RotatedBatch, SecretError> {
        let keyring = self.keyring()?;
        let target = keyring.get(version)?;
        let mut tx = conn.begin().await?;
        let rows = db::claim_for_rotation(&mut tx, version, limit).await?;
        let mut rewritten = Vec::with_capacity(rows.len());
        for row in &rows {
            let plaintext = keyring.open_bytes(row)?;
            let sealed = target.seal(&cipher::secret_aad(row.id), &plaintext);
            rewritten.push((row.id, sealed.nonce.to_vec(), sealed.ciphertext));
        }
        let rotated = if rewritten.is_empty() {
            0
        } else {
            db::store_rotated(&mut tx, version, &rewritten).await?
        };
        tx.commit().await?;
        Ok(RotatedBatch { rotated })
    }
}

impl Keyring {
    fn get(&self, version: i32) -> Result<&KeyCipher, SecretError> {
        self.ciphers
            .get(&version)
            .ok_or(SecretError::KeyNotHeld { version })
    }

    fn open_bytes(&self, row: &db::SecretRow) -> Result<Vec<u8>, SecretError> {
        let undecryptable = || SecretError::Undecryptable {
            id: row.id,
            version: row.key_version,
        };
        let nonce: &[u8; cipher::NONCE_LEN] = row
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| undecryptable())?;
        self.get(row.key_version)?
            .open(&cipher::secret_aad(row.id), nonce, &row.ciphertext)
            .ok_or_else(undecryptable)
    }

    fn open(&self, row: &db::SecretRow) -> Result<String, SecretError> {
        let bytes = self.open_bytes(row)?;
        // Only `seal` writes these rows, from a `&str`; anything else was tampered with.
        String::from_utf8(bytes).map_err(|_| SecretError::Undecryptable {
            id: row.id,
            version: row.key_version,
        })
    }
}

/// The active version, share-locked until the transaction ends. Asks again when a
/// rotation switched versions while this waited for its lock.
async fn lock_active_version(conn: &mut PgConnection) -> Result<i32, SecretError> {
    for _ in 0..ACTIVE_VERSION_ATTEMPTS {
        if let Some(version) = db::lock_active_version(&mut *conn).await? {
            return Ok(version);
        }
        if db::active_version(&mut *conn).await?.is_none() {
            return Err(SecretError::NoActiveKey);
        }
    }
    Err(SecretError::NoActiveKey)
}
