//! Replicas: versions made in a peer region, which its replication applies here with their own
//! version, and the headers that carry them over the S3 API (`api::replica`,
//! `background::resync`).

use node_rpc::protocol::OutboxState;
use node_rpc::record::{ObjectRecord, Version};

/// A replica's version, as its 24 hex digits.
pub const VERSION_HEADER: &str = "x-tessera-replica-version";
/// `true` when the replica was made with versioning enabled, `false` for a null version.
pub const VERSIONED_HEADER: &str = "x-tessera-replica-versioned";
/// The revision the version had in its region when it was sent (a tag, ACL or retention change
/// is a new revision of the same version, sent again); absent: 0.
pub const REVISION_HEADER: &str = "x-tessera-replica-revision";
/// The version of an object, in a HEAD's answer to a peer region's replication key: how a
/// resync tells whether the peer's null version is older than this region's.
pub const VERSION_OF_HEADER: &str = "x-tessera-version";

/// A version made in another region, as its replication applies it here: the same version
/// (so that its id, and its place among the key's versions, are the same in every region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replica {
    pub version: Version,
    /// Made with versioning enabled (else it was the key's null version there).
    pub versioned: bool,
    /// Its revision there: a higher one replaces what a holder has of the version.
    pub revision: u32,
}

impl Replica {
    /// The version a write makes: the replica's, or a new one. A replica's moves this
    /// gateway's clock past it, so that later local writes of the key order after it.
    pub fn version_of(replica: Option<Replica>) -> Version {
        match replica {
            Some(replica) => {
                Version::observe(replica.version);
                replica.version
            }
            None => Version::now(),
        }
    }
}

/// A version's `x-amz-replication-status`: `REPLICA` when it came from a peer region; for one
/// made here and queued for peers, `PENDING` while a holder that answered still has it queued (or
/// their outboxes are not known), `FAILED` while a target refuses it, else `COMPLETED`, which a
/// holder's entry for a target is removed only after that target's write quorum committed it.
/// `None` for a version that was never queued.
pub fn status(record: &ObjectRecord, outbox: Option<&OutboxState>) -> Option<&'static str> {
    if record.replica {
        return Some("REPLICA");
    }
    if !record.queued {
        return None;
    }
    Some(match outbox {
        Some(state) if state.failed.is_some() => "FAILED",
        Some(state) if state.targets.is_empty() => "COMPLETED",
        _ => "PENDING",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_completed_only_when_no_holder_has_it_queued() {
        let mut record = ObjectRecord::tombstone(Version::now(), true);
        assert_eq!(status(&record, None), None, "never queued");
        record.queued = true;
        let queued = OutboxState {
            targets: vec!["eu-west-1".into()],
            failed: None,
        };
        assert_eq!(status(&record, Some(&queued)), Some("PENDING"));
        assert_eq!(status(&record, None), Some("PENDING"), "not known");
        let refused = OutboxState {
            failed: Some("eu-west-1: NoSuchBucket".into()),
            ..queued
        };
        assert_eq!(status(&record, Some(&refused)), Some("FAILED"));
        assert_eq!(
            status(&record, Some(&OutboxState::default())),
            Some("COMPLETED")
        );
        record.replica = true;
        assert_eq!(status(&record, None), Some("REPLICA"));
    }
}
