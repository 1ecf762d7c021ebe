//! Each user's effective grants, cached per node. A change of a role, team,
//! membership or grant announces `access` on the users channel and every node drops
//! its whole cache at once; a changed, disabled or deleted user drops that user's.
//! The time limit only bounds the damage of a lost notification.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use capstan_core::access::{Grant, Permission};
use capstan_db::{DbError, access::EffectiveGrantRow, notify::UserNotice};

/// How long a node trusts a user's cached grants without a notification.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most users cached; past it the cache starts over.
const CACHE_MAX: usize = 10_000;

/// A user's grants, shared by the requests that use them.
pub type Grants = Arc<[Grant]>;

#[derive(Default)]
pub struct AccessCache {
    grants: Mutex<HashMap<i64, (Grants, Instant)>>,
}

impl AccessCache {
    /// The grants of `user_id`: from the cache, or the database.
    pub async fn grants(&self, db: &sqlx::PgPool, user_id: i64) -> Result<Grants, DbError> {
        if let Some(grants) = self.cached(user_id) {
            return Ok(grants);
        }
        let rows = capstan_db::access::effective_grants(db, user_id).await?;
        let grants: Grants = rows.into_iter().map(grant).collect();
        let mut cache = lock(&self.grants);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(user_id, (grants.clone(), Instant::now()));
        Ok(grants)
    }

    /// The cached grants of `user_id`, if still fresh.
    pub fn cached(&self, user_id: i64) -> Option<Grants> {
        let cache = lock(&self.grants);
        let (grants, at) = cache.get(&user_id)?;
        (at.elapsed() < CACHE_TTL).then(|| grants.clone())
    }

    /// A notification on the users channel.
    pub fn notified(&self, notice: UserNotice) {
        let mut cache = lock(&self.grants);
        match notice {
            UserNotice::AccessChanged => cache.clear(),
            UserNotice::Changed(user) => {
                cache.remove(&user);
            }
            UserNotice::KeyRevoked(_) => {}
        }
    }

    /// LISTEN was (re)established: anything may have changed meanwhile.
    pub fn clear(&self) {
        lock(&self.grants).clear();
    }
}

/// A stored grant as the check reads it. A permission this node does not know (a
/// newer node wrote it) is left out: unknown means not allowed.
fn grant(row: EffectiveGrantRow) -> Grant {
    Grant {
        permissions: row
            .permissions
            .iter()
            .filter_map(|p| Permission::parse(p).ok())
            .collect(),
        projects: row.project_ids.map(BTreeSet::from_iter),
        environments: row.environment_ids.map(BTreeSet::from_iter),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
