//! Changes to a bucket's record: read fresh, changed, written back to every node.

use crate::ops::cluster::Cluster;
use crate::s3::error::S3Error;
use node_rpc::record::{BucketRecord, Version};

/// The bucket's record read fresh from the nodes (not the cache), for read-modify-write.
pub async fn live_bucket(cluster: &Cluster, name: &str) -> Result<BucketRecord, S3Error> {
    cluster
        .buckets(true)
        .await?
        .get(name)
        .filter(|b| !b.deleted)
        .cloned()
        .ok_or(S3Error::NoSuchBucket)
}

/// Changes a live bucket's settings: a new version of its record, written to every node (the
/// system table converges by last writer wins, so of two concurrent changes one is lost whole).
pub async fn update_bucket(
    cluster: &Cluster,
    name: &str,
    change: impl FnOnce(&mut BucketRecord),
) -> Result<(), S3Error> {
    let mut record = live_bucket(cluster, name).await?;
    record.created = Some(record.created());
    record.version = Version::now();
    change(&mut record);
    cluster.put_bucket(record).await
}
