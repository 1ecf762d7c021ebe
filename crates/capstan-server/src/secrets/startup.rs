//! The start-up check of a node's master keys against the database's key versions.
//!
//! A wrong key must stop a node at start with a clear reason, not surface later as
//! values that do not decrypt. Each key version is known by its key-check value; a
//! node finds which versions its keys open, registers its key when it is new, and
//! refuses to start when it could not open some version that still has values.

use std::collections::BTreeMap;

use capstan_api::timestamp;
use capstan_db::secrets::{self as db, MasterKeyRow};
use sqlx::PgPool;

use super::{Secrets, cipher::KeyCipher};
use crate::config::MasterKey;

/// What the check found: the node's keyring, and what to tell the operator.
#[derive(Debug)]
pub struct KeyCheck {
    pub secrets: Secrets,
    /// The start-up line after `✔ keys`.
    pub summary: String,
    /// Things the operator should know that do not stop the node.
    pub warnings: Vec<String>,
}

/// Checks `current` (CAPSTAN_MASTER_KEY) and `previous` (CAPSTAN_MASTER_KEY_PREVIOUS)
/// against the key versions in the database, registering `current` as a new version
/// when it is new. `Err` is the reason the node must not start.
pub async fn check_keys(
    pool: &PgPool,
    current: Option<&MasterKey>,
    previous: &[MasterKey],
) -> Result<KeyCheck, String> {
    let db_error = |e: capstan_db::DbError| format!("cannot read the master key versions: {e}");
    let mut tx = pool.begin().await.map_err(|e| db_error(e.into()))?;
    db::lock_master_keys(&mut tx).await.map_err(db_error)?;
    let versions = db::list_master_keys(&mut *tx).await.map_err(db_error)?;

    let Some(current) = current else {
        let with_values: Vec<i32> = versions
            .iter()
            .filter(|v| v.has_secrets)
            .map(|v| v.version)
            .collect();
        let warnings = if with_values.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "this node has no CAPSTAN_MASTER_KEY, but the database holds sensitive values \
                 (under key version {}): this node can neither read nor store them; set \
                 CAPSTAN_MASTER_KEY on every node (see docs/security.md)",
                list(&with_values)
            )]
        };
        return Ok(KeyCheck {
            secrets: Secrets::without_key(),
            summary: "no CAPSTAN_MASTER_KEY: sensitive values cannot be stored".to_owned(),
            warnings,
        });
    };

    let mut held: BTreeMap<i32, MasterKey> = BTreeMap::new();
    let mut current_version = None;
    let keys = std::iter::once((current, true)).chain(previous.iter().map(|k| (k, false)));
    for (key, is_current) in keys {
        let cipher = KeyCipher::new(key);
        for version in &versions {
            if cipher.matches(&version.check_nonce, &version.check_ciphertext) {
                held.entry(version.version).or_insert_with(|| key.clone());
                if is_current {
                    current_version.get_or_insert(version.version);
                }
            }
        }
    }

    let active = versions.iter().find(|v| v.active);
    let any_values = versions.iter().any(|v| v.has_secrets);
    let mut active_now = active.map(|a| a.version);
    let mut warnings = Vec::new();
    let current_version = match current_version {
        Some(version) => version,
        None => {
            let next = versions.last().map_or(1, |v| v.version + 1);
            let previous_holds_active = active.is_some_and(|a| held.contains_key(&a.version));
            let activate = if versions.is_empty() {
                true
            } else if previous_holds_active {
                // A deliberate new key, rolled out with the old one as previous: it
                // waits for `capstan master-key rotate`, so nodes still on the old key
                // keep sealing under a key they hold.
                false
            } else if !any_values {
                warnings.push(format!(
                    "CAPSTAN_MASTER_KEY matches none of the {} registered key version(s), and no \
                     sensitive value is stored yet: registered it as key version {next} and made \
                     it active; nodes still on an older key cannot store values until they get \
                     this one",
                    versions.len()
                ));
                true
            } else {
                return Err(mismatch(&versions, !previous.is_empty()));
            };
            let check = KeyCipher::new(current).key_check();
            db::register_master_key(&mut tx, next, &check.nonce, &check.ciphertext, activate)
                .await
                .map_err(|e| format!("cannot register the master key as version {next}: {e}"))?;
            held.insert(next, current.clone());
            if activate {
                active_now = Some(next);
            }
            next
        }
    };

    // Every version that still has values must be readable here, or this node would
    // fail requests that another node serves.
    if let Some(unreadable) = versions
        .iter()
        .filter(|v| v.has_secrets && !held.contains_key(&v.version))
        .max_by_key(|v| v.version)
    {
        return Err(format!(
            "this node's keys cannot open the sensitive values still encrypted under key version \
             {} (created {}): set CAPSTAN_MASTER_KEY_PREVIOUS to that version's key until \
             `capstan master-key rotate` has re-encrypted them (see docs/security.md)",
            unreadable.version,
            timestamp::format(unreadable.created_at)
        ));
    }
    tx.commit()
        .await
        .map_err(|e| format!("cannot register the master key: {e}"))?;

    // Some version is active once a key is registered; only a hand-edited table lacks one.
    let active_now = active_now.unwrap_or(current_version);
    if !held.contains_key(&active_now) {
        warnings.push(format!(
            "this node does not hold the active master key version {active_now}: it can read \
             values but not store new ones; give it that key (see docs/security.md)"
        ));
    }
    let versions_held: Vec<i32> = held.keys().copied().collect();
    let summary = format!(
        "master key is version {current_version} ({}); this node holds version(s) {}",
        if current_version == active_now {
            "active".to_owned()
        } else {
            format!(
                "not active yet: version {active_now} is; run `capstan master-key rotate` once every node has the new key"
            )
        },
        list(&versions_held)
    );
    Ok(KeyCheck {
        secrets: Secrets::with_keys(held),
        summary,
        warnings,
    })
}

/// Why a key that matches no version may not start a node.
fn mismatch(versions: &[MasterKeyRow], had_previous: bool) -> String {
    // Name the version values are sealed under now if it has any, else the newest
    // version that has some: the one the operator most likely meant to give.
    let named = versions
        .iter()
        .find(|v| v.active && v.has_secrets)
        .or_else(|| {
            versions
                .iter()
                .filter(|v| v.has_secrets)
                .max_by_key(|v| v.version)
        })
        .expect("called only when some version has values");
    format!(
        "CAPSTAN_MASTER_KEY does not match the key this database's secrets are encrypted with \
         (key version {}, created {}){}: check the value, or see docs/security.md for rotating keys",
        named.version,
        timestamp::format(named.created_at),
        if had_previous {
            ", and no key in CAPSTAN_MASTER_KEY_PREVIOUS matches the active version"
        } else {
            ""
        }
    )
}

fn list(versions: &[i32]) -> String {
    versions
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
