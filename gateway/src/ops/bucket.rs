//! Changes to a bucket's record: read fresh, changed, written back to every node; and the records
//! a peer region sends.

use crate::ops::cluster::Cluster;
use crate::ops::error::OpError;
use crate::ops::list::{list, list_versions, ListQuery, VersionQuery};
use node_rpc::record::{BucketRecord, Version};

/// The bucket's record read fresh from the nodes (not the cache), for read-modify-write.
pub async fn live_bucket(cluster: &Cluster, name: &str) -> Result<BucketRecord, OpError> {
    cluster
        .buckets(true)
        .await?
        .get(name)
        .filter(|b| !b.deleted)
        .cloned()
        .ok_or(OpError::NoSuchBucket)
}

/// Changes a live bucket's settings: a new version of its record, written to every node (the
/// system table converges by last writer wins, so of two concurrent changes one is lost whole).
pub async fn update_bucket(
    cluster: &Cluster,
    name: &str,
    change: impl FnOnce(&mut BucketRecord),
) -> Result<(), OpError> {
    let mut record = live_bucket(cluster, name).await?;
    record.created = Some(record.created());
    record.version = Version::now();
    change(&mut record);
    cluster.put_bucket(record).await
}

/// Whether a bucket holds nothing: no object, and with versioning, no version or delete marker
/// (as S3 wants before a bucket is deleted).
pub async fn is_empty(cluster: &Cluster, bucket: &BucketRecord) -> Result<bool, OpError> {
    if bucket.versioning.is_some() {
        let query = VersionQuery {
            prefix: String::new(),
            delimiter: None,
            key_marker: None,
            version_marker: None,
            max_keys: 1,
            hide_markers: false,
        };
        let page = list_versions(cluster, &bucket.id, &query).await?;
        return Ok(page.versions.is_empty());
    }
    let query = ListQuery {
        prefix: String::new(),
        delimiter: None,
        after: None,
        max_keys: 1,
    };
    Ok(list(cluster, &bucket.id, &query).await?.keys.is_empty())
}

/// What became of a bucket record a peer region sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied, or older than what this region has (nothing to do).
    Done,
    /// A deletion of a bucket that still holds objects here: it waits until they are gone.
    NotEmpty,
}

/// Applies a bucket record made in a peer region, last writer wins as within a region: a newer
/// record's settings replace this region's. The bucket keeps its id here (each region's own:
/// regions address buckets by name), and a deletion applies only once the bucket is empty here.
pub async fn apply_replica(cluster: &Cluster, incoming: BucketRecord) -> Result<Applied, OpError> {
    Version::observe(incoming.version);
    let table = cluster.buckets(true).await?;
    let record = match table.get(&incoming.name) {
        Some(local) if local.version >= incoming.version => return Ok(Applied::Done),
        Some(local) if !local.deleted => {
            if incoming.deleted && !is_empty(cluster, local).await? {
                return Ok(Applied::NotEmpty);
            }
            BucketRecord {
                id: local.id,
                ..incoming
            }
        }
        _ => incoming,
    };
    cluster.put_bucket(record).await?;
    Ok(Applied::Done)
}
