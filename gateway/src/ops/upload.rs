//! Multipart uploads as the cluster keeps them: finding one and its parts, every open upload of
//! a bucket, and aborts.

use crate::ops::cluster::Cluster;
use crate::ops::commit::commit_quorum;
use crate::ops::error::OpError;
use futures::future::join_all;
use node_rpc::record::{BucketRecord, PartRecord, UploadRecord};
use std::collections::BTreeMap;

/// Forgets an upload and its parts on a write quorum of the key's holders.
pub async fn abort_upload(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    upload_id: &str,
) -> Result<(), OpError> {
    let holders = cluster.write_holders(&bucket.id, key);
    let bucket_id = bucket.id;
    commit_quorum(cluster, &holders, &vec![true; holders.len()], |h| {
        let client = cluster.client_for(&h);
        async move {
            client
                .abort_upload(&h.node.addr, &bucket_id, upload_id)
                .await
        }
    })
    .await
}

/// Every open upload of a bucket, from every node that answers.
pub async fn all_uploads(
    cluster: &Cluster,
    bucket: &BucketRecord,
) -> Result<Vec<UploadRecord>, OpError> {
    let nodes = cluster.all_nodes();
    let answers = cluster
        .on_all(&nodes, |n| cluster.client.uploads(&n.addr, &bucket.id))
        .await;
    let mut uploads: BTreeMap<String, UploadRecord> = BTreeMap::new();
    for upload in answers.into_iter().flatten().flatten() {
        uploads.insert(upload.upload_id.clone(), upload);
    }
    Ok(uploads.into_values().collect())
}

/// The upload's record from a read quorum of the key's holders, or `NoSuchUpload`.
pub async fn find_upload(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    upload_id: &str,
) -> Result<UploadRecord, OpError> {
    if !node_rpc::record::is_fragment_id(upload_id) {
        return Err(OpError::NoSuchUpload);
    }
    let holders = cluster.holders(&bucket.id, key);
    let answers = join_all(
        holders
            .iter()
            .map(|h| cluster.client.upload(&h.node.addr, &bucket.id, upload_id)),
    )
    .await;
    cluster
        .read_quorum()
        .tally(&answers, "holders answered for the upload")?;
    answers
        .into_iter()
        .flatten()
        .flatten()
        .find(|u| u.key == key)
        .ok_or(OpError::NoSuchUpload)
}

/// Each holder's records of an upload's parts (`None`: it did not answer), and the newest record
/// of each part among them. A read quorum must answer: a part uploaded again is committed to a
/// write quorum, so at least one answer has its newest record.
pub async fn upload_parts(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    upload_id: &str,
) -> Result<(Vec<Option<Vec<PartRecord>>>, BTreeMap<u32, PartRecord>), OpError> {
    let holders = cluster.holders(&bucket.id, key);
    let asked = holders
        .iter()
        .map(|h| cluster.client.parts(&h.node.addr, upload_id));
    let answers = join_all(asked).await;
    cluster
        .read_quorum()
        .tally(&answers, "holders answered for the parts")?;
    let answers: Vec<Option<Vec<PartRecord>>> = answers.into_iter().map(Result::ok).collect();
    let mut newest: BTreeMap<u32, PartRecord> = BTreeMap::new();
    for record in answers.iter().flatten().flatten() {
        match newest.get(&record.part.number) {
            Some(have) if have.version >= record.version => {}
            _ => {
                newest.insert(record.part.number, record.clone());
            }
        }
    }
    Ok((answers, newest))
}
