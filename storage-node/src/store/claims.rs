//! Claims: a conditional write's reservation of a key between checking its condition and
//! committing, held in memory only.

use super::keys::object_key;
use super::{Store, StoreError};
use crate::protocol::{ClaimAnswer, Replicate};
use crate::record::{BucketId, ObjectRecord, Version};
use std::time::{Duration, Instant};

/// How long a conditional write may hold its claim on a key between claiming and committing.
const CLAIM_TTL: Duration = Duration::from_secs(30);

pub(super) struct Claim {
    token: String,
    expected: Option<Version>,
    until: Instant,
}

impl Store {
    /// Reserves a key for one conditional write (`token`) while the key's current version is not
    /// newer than `expected`, the version the writer checked its condition against. A claim ends
    /// with `commit_claimed` or `release`, or after `CLAIM_TTL` when its writer went away.
    pub fn claim(
        &self,
        bucket: &BucketId,
        key: &str,
        token: &str,
        expected: Option<Version>,
    ) -> Result<ClaimAnswer, StoreError> {
        let db_key = object_key(bucket, key);
        let _guard = self.lock_for(&db_key);
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        claims.retain(|_, c| c.until > now);
        if claims.get(&db_key).is_some_and(|c| c.token != token) {
            return Ok(ClaimAnswer::Busy);
        }
        let current: Option<ObjectRecord> = self.get_json(&db_key)?;
        if current.is_some_and(|c| Some(c.version) > expected) {
            return Ok(ClaimAnswer::Changed);
        }
        claims.insert(
            db_key,
            Claim {
                token: token.to_string(),
                expected,
                until: now + CLAIM_TTL,
            },
        );
        Ok(ClaimAnswer::Granted)
    }

    /// Gives up a claim (a conditional write that did not get its quorum of claims).
    pub fn release(&self, bucket: &BucketId, key: &str, token: &str) {
        let db_key = object_key(bucket, key);
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        if claims.get(&db_key).is_some_and(|c| c.token == token) {
            claims.remove(&db_key);
        }
    }

    /// Commits a conditional write: only while its claim holds and the key's current version is
    /// still not newer than the one its condition was checked against (a plain write may have
    /// landed since the claim). The claim ends either way. Returns whether it was applied.
    pub fn commit_claimed(
        &self,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        upload_id: Option<&str>,
        replicate: Option<&Replicate>,
        token: &str,
    ) -> Result<bool, StoreError> {
        let db_key = object_key(bucket, key);
        let _guard = self.lock_for(&db_key);
        let claim = {
            let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
            match claims.get(&db_key) {
                Some(c) if c.token == token => claims.remove(&db_key),
                _ => None,
            }
        };
        let Some(claim) = claim.filter(|c| c.until > Instant::now()) else {
            return Ok(false);
        };
        let current: Option<ObjectRecord> = self.get_json(&db_key)?;
        if current.is_some_and(|c| Some(c.version) > claim.expected) {
            return Ok(false);
        }
        self.commit_locked(bucket, key, record, upload_id, replicate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{open, record, v, BUCKET};

    #[test]
    fn claims_admit_one_conditional_writer() {
        let (_dir, store) = open();
        assert_eq!(
            store.claim(&BUCKET, "k", "one", None).unwrap(),
            ClaimAnswer::Granted
        );
        assert_eq!(
            store.claim(&BUCKET, "k", "two", None).unwrap(),
            ClaimAnswer::Busy
        );
        assert!(!store
            .commit_claimed(&BUCKET, "k", &record(10, None), None, None, "two")
            .unwrap());
        assert!(store
            .commit_claimed(&BUCKET, "k", &record(10, None), None, None, "one")
            .unwrap());
        assert_eq!(
            store.claim(&BUCKET, "k", "two", None).unwrap(),
            ClaimAnswer::Changed
        );
        assert_eq!(
            store.claim(&BUCKET, "k", "two", Some(v(10))).unwrap(),
            ClaimAnswer::Granted
        );
        store.release(&BUCKET, "k", "two");
        assert_eq!(
            store.claim(&BUCKET, "k", "three", Some(v(10))).unwrap(),
            ClaimAnswer::Granted
        );
        // A plain write between claim and commit makes the conditional commit fail.
        store
            .commit_object(&BUCKET, "k", &record(20, None), None)
            .unwrap();
        assert!(!store
            .commit_claimed(&BUCKET, "k", &record(30, None), None, None, "three")
            .unwrap());
    }
}
