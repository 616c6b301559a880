//! Replicas: versions made in a peer region, which its replication applies here with their own
//! version, and the headers that carry them over the S3 API (`api::replica`,
//! `background::resync`).

use node_rpc::record::Version;

/// A replica's version, as its 24 hex digits.
pub const VERSION_HEADER: &str = "x-tessera-replica-version";
/// `true` when the replica was made with versioning enabled, `false` for a null version.
pub const VERSIONED_HEADER: &str = "x-tessera-replica-versioned";
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
