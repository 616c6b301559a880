//! How many holders a lookup asks first, learned per bucket from what its lookups found.
//!
//! Objects up to the small-object threshold are coded with R data shards (see
//! `Cluster::small_objects`), so a read quorum of records is enough to read them, and a lookup
//! asks only R holders first: asking k would double the calls of every small GET (4 KiB GETs at
//! 32 in flight fell from 13,700/s to 7,900-8,600/s). But a larger object needs k records, and a
//! lookup that asked R finds that out from the first answer and asks k-R more, one round trip
//! later (1-6% of the rate of 1 MiB GETs at 8 in flight, as measured). Buckets tend to hold
//! objects of one kind, so each bucket remembers which kind its recent lookups found and asks for
//! that many.
//! This only chooses whom to ask first: a lookup still asks whoever it needs after that.

use node_rpc::record::BucketId;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most buckets remembered; past it the memory starts over (every bucket back to asking R).
const MAX_BUCKETS: usize = 4096;
/// How far a bucket's score goes either way: after a run of large objects, this many small ones
/// in a row bring its lookups back to asking R first.
const SCORE_LIMIT: i8 = 4;

/// Per bucket, a score that large objects found by its lookups raise and small ones lower.
#[derive(Default)]
pub struct LookupWidth {
    scores: Mutex<HashMap<BucketId, i8>>,
}

impl LookupWidth {
    /// Whether lookups in `bucket` have lately found more objects that need k records than
    /// objects a read quorum can serve. A bucket never seen has not.
    pub fn expects_large(&self, bucket: &BucketId) -> bool {
        let scores = self.scores.lock().expect("never poisoned");
        scores.get(bucket).is_some_and(|score| *score > 0)
    }

    /// Records what a lookup in `bucket` found: an object that needs more records than a read
    /// quorum (`large`), or one that does not (a small object, a delete marker, no object).
    pub fn learn(&self, bucket: &BucketId, large: bool) {
        let mut scores = self.scores.lock().expect("never poisoned");
        if scores.len() >= MAX_BUCKETS && !scores.contains_key(bucket) {
            scores.clear();
        }
        let score = scores.entry(*bucket).or_insert(0);
        *score = match large {
            true => score.saturating_add(1).min(SCORE_LIMIT),
            false => score.saturating_sub(1).max(-SCORE_LIMIT),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(n: u16) -> BucketId {
        let mut id: BucketId = [0; 16];
        id[..2].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn a_bucket_asks_for_what_its_recent_lookups_found() {
        let width = LookupWidth::default();
        let (a, b) = (bucket(1), bucket(2));
        assert!(!width.expects_large(&a), "a bucket never seen asks R first");
        width.learn(&a, true);
        assert!(width.expects_large(&a));
        assert!(!width.expects_large(&b), "buckets are learned apart");
        width.learn(&a, false);
        assert!(
            !width.expects_large(&a),
            "one small object evens one large one"
        );
    }

    #[test]
    fn a_long_run_is_undone_by_a_bounded_one() {
        let width = LookupWidth::default();
        let a = bucket(1);
        for _ in 0..1000 {
            width.learn(&a, true);
        }
        for _ in 0..SCORE_LIMIT {
            assert!(width.expects_large(&a));
            width.learn(&a, false);
        }
        assert!(!width.expects_large(&a));
    }

    #[test]
    fn the_buckets_remembered_are_bounded() {
        let width = LookupWidth::default();
        for n in 0..MAX_BUCKETS as u16 {
            width.learn(&bucket(n), true);
        }
        assert!(width.expects_large(&bucket(0)));
        width.learn(&bucket(u16::MAX), true);
        assert_eq!(width.scores.lock().unwrap().len(), 1);
        assert!(
            !width.expects_large(&bucket(0)),
            "forgotten: back to R first"
        );
        assert!(width.expects_large(&bucket(u16::MAX)));
    }
}
