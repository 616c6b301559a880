//! Deletes: tombstones and delete markers committed to a write quorum, and versions purged for
//! good.

use crate::ops::cluster::Cluster;
use crate::ops::commit::commit_quorum;
use crate::ops::commit::commit_record;
use crate::ops::error::OpError;
use crate::ops::lookup::find_version;
use crate::ops::replica::Replica;
use node_rpc::object_lock::now_millis;
use node_rpc::protocol::{PurgeRequest, Replicate};
use node_rpc::record::{BucketRecord, ObjectRecord, Version, VersionRef, Versioning};

/// What a delete did, as its response tells it.
pub struct Removed {
    /// The version deleted, or the delete marker made.
    pub version_id: Option<String>,
    /// A delete marker was made, or the version deleted was one.
    pub delete_marker: bool,
}

/// DeleteObject as S3 does it. Without a version id: a tombstone in a bucket that never had
/// versioning, a new delete marker with versioning enabled, a null delete marker (replacing the
/// null version) when suspended. With one: that version goes for good, unless Object Lock
/// protects it (`bypass_governance`: the request's `x-amz-bypass-governance-retention`).
pub async fn remove(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    which: Option<VersionRef>,
    bypass_governance: bool,
) -> Result<Removed, OpError> {
    match (which, bucket.versioning) {
        (None | Some(VersionRef::Null), None) => {
            write_tombstone(cluster, bucket, key, false, None).await?;
            Ok(Removed {
                version_id: None,
                delete_marker: false,
            })
        }
        (None, Some(versioning)) => {
            let versioned = versioning == Versioning::Enabled;
            let version = write_tombstone(cluster, bucket, key, versioned, None).await?;
            Ok(Removed {
                version_id: Some(if versioned {
                    version.to_string()
                } else {
                    VersionRef::Null.to_string()
                }),
                delete_marker: true,
            })
        }
        (Some(which), _) => {
            if bucket.object_lock.is_some() {
                check_unlocked(cluster, bucket, key, which, bypass_governance).await?;
            }
            let replicate = cluster.replicate(bucket);
            let delete_marker =
                purge(cluster, bucket, key, which, bypass_governance, replicate).await?;
            Ok(Removed {
                version_id: Some(which.to_string()),
                delete_marker,
            })
        }
    }
}

/// Applies a delete made in another region: its tombstone or delete marker, with its version,
/// or with `which`, its purge of that version (which no Object Lock here may refuse, since the
/// version's lock, replicated with it, allowed the purge there).
pub async fn remove_replica(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    replica: Replica,
    which: Option<VersionRef>,
) -> Result<Removed, OpError> {
    if let Some(which) = which {
        let delete_marker = purge(cluster, bucket, key, which, false, None).await?;
        return Ok(Removed {
            version_id: Some(which.to_string()),
            delete_marker,
        });
    }
    let version = write_tombstone(cluster, bucket, key, replica.versioned, Some(replica)).await?;
    let id = match replica.versioned {
        true => VersionRef::Id(version),
        false => VersionRef::Null,
    };
    Ok(Removed {
        version_id: Some(id.to_string()),
        delete_marker: true,
    })
}

/// Deletes a key: a tombstone (or delete marker) committed to a write quorum of its holders,
/// with a new version, or a replica's.
pub async fn write_tombstone(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    versioned: bool,
    replica: Option<Replica>,
) -> Result<Version, OpError> {
    let holders = cluster.write_holders(&bucket.id, key);
    let version = Replica::version_of(replica);
    let mut tombstone = ObjectRecord::tombstone(version, versioned);
    tombstone.replica = replica.is_some();
    let all = vec![true; holders.len()];
    commit_record(
        cluster,
        bucket,
        key,
        &holders,
        &all,
        |_| tombstone.clone(),
        None,
        None,
    )
    .await?;
    Ok(version)
}

/// Refuses to purge a version that Object Lock protects, as a read quorum knows its lock: a
/// holder that missed the lock's revision would not refuse the purge itself. A version that is
/// gone, or a delete marker, has no lock.
async fn check_unlocked(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    which: VersionRef,
    bypass_governance: bool,
) -> Result<(), OpError> {
    match find_version(cluster, bucket, key, Some(which), false).await {
        Ok(found)
            if found
                .record
                .lock
                .protection(now_millis(), bypass_governance)
                .is_some() =>
        {
            Err(OpError::Locked)
        }
        Ok(_) | Err(OpError::NoSuchVersion | OpError::DeleteMarkerVersion { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes one version for good on a write quorum of the key's holders. Returns whether it was
/// a delete marker. Each holder checks the version's lock again, with its own record and clock.
async fn purge(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    which: VersionRef,
    bypass_governance: bool,
    replicate: Option<Replicate>,
) -> Result<bool, OpError> {
    let holders = cluster.holders(&bucket.id, key);
    let request = PurgeRequest {
        bucket: bucket.id,
        key: key.to_string(),
        version: which,
        bypass_governance,
        replicate,
    };
    let client = &cluster.client;
    let was_marker = std::sync::atomic::AtomicBool::new(false);
    commit_quorum(cluster, &holders, &vec![true; holders.len()], |h| {
        let (request, was_marker) = (&request, &was_marker);
        async move {
            let removed = client.purge(&h.node.addr, request).await?;
            if removed == Some(true) {
                was_marker.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        }
    })
    .await?;
    Ok(was_marker.into_inner())
}
