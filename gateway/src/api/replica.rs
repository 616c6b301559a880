//! Replicas arrive through the S3 API: a PUT or DELETE signed with the replication key of a peer
//! region (`RegionConfig::replication_key_id`) and carrying the version in
//! `x-tessera-replica-version` (`ops::replica`); bucket records as `POST
//! /_tessera/replication/buckets`, access keys as `POST /_tessera/replication/keys`.

use crate::api::access::Principal;
use crate::api::{Gateway, S3Request};
use crate::ops::bucket::{apply_replica, Applied};
use crate::ops::replica::{Replica, REVISION_HEADER, VERSIONED_HEADER, VERSION_HEADER};
use crate::ops::secret_seal::SecretSeal;
use crate::s3::error::S3Error;
use crate::s3::response::{json_response, S3Response};
use http::StatusCode;
use node_rpc::record::{BucketRecord, KeyRecord};

/// Where a peer region sends its bucket records, under the admin API's prefix.
pub const BUCKETS_PATH: &str = "replication/buckets";
/// Where a peer region sends its access keys.
pub const KEYS_PATH: &str = "replication/keys";
/// The largest batch of bucket or key records one request may carry.
const RECORDS_BODY_LIMIT: u64 = 8 << 20;

/// The replica a request applies, if it carries one.
pub fn requested(req: &S3Request) -> Result<Option<Replica>, S3Error> {
    let Some(version) = req.header(VERSION_HEADER) else {
        return match req.header(VERSIONED_HEADER) {
            Some(_) => Err(S3Error::InvalidArgument(format!(
                "{VERSIONED_HEADER} without {VERSION_HEADER}"
            ))),
            None => Ok(None),
        };
    };
    let version = version
        .parse()
        .map_err(|()| S3Error::InvalidArgument(format!("{VERSION_HEADER} is no version")))?;
    let versioned = match req.header(VERSIONED_HEADER) {
        Some("true") => true,
        Some("false") => false,
        _ => {
            return Err(S3Error::InvalidArgument(format!(
                "{VERSIONED_HEADER} must be true or false"
            )))
        }
    };
    let revision = match req.header(REVISION_HEADER) {
        Some(n) => n
            .parse()
            .map_err(|_| S3Error::InvalidArgument(format!("{REVISION_HEADER} is no revision")))?,
        None => 0,
    };
    Ok(Some(Replica {
        version,
        versioned,
        revision,
    }))
}

/// `POST /_tessera/replication/buckets`: bucket records from a peer region (a JSON array), each
/// applied by last writer wins (`ops::bucket::apply_replica`). Answers `{"waiting": [names]}`:
/// the deletions that wait for a bucket to be emptied here, which the peer sends again.
pub async fn apply_buckets(gw: &Gateway, req: S3Request) -> Result<S3Response, S3Error> {
    let records: Vec<BucketRecord> = records_from_peer(req, "bucket records").await?;
    let mut waiting = Vec::new();
    for record in records {
        let name = record.name.clone();
        if apply_replica(&gw.cluster, record).await? == Applied::NotEmpty {
            waiting.push(name);
        }
    }
    json_response(StatusCode::OK, &serde_json::json!({ "waiting": waiting }))
}

/// `POST /_tessera/replication/keys`: access key records from a peer region (a JSON array, each
/// secret sealed under the replication secret), each applied by last writer wins
/// (`Cluster::apply_replica_keys`). Answers `{"refused": [ids]}`: the keys whose secret did not
/// open (sealed under another replication secret), which are not applied.
pub async fn apply_keys(gw: &Gateway, req: S3Request) -> Result<S3Response, S3Error> {
    let records: Vec<KeyRecord> = records_from_peer(req, "key records").await?;
    let Some(region) = &gw.region else {
        return Err(S3Error::AccessDenied("this gateway's region has no peers"));
    };
    let in_transit = SecretSeal::in_transit(&region.replication_secret);
    let refused = gw.cluster.apply_replica_keys(records, &in_transit).await?;
    json_response(StatusCode::OK, &serde_json::json!({ "refused": refused }))
}

/// The records a peer region's replication sent (`what`, for errors); refused to anyone else.
async fn records_from_peer<R: serde::de::DeserializeOwned>(
    req: S3Request,
    what: &str,
) -> Result<Vec<R>, S3Error> {
    if !matches!(req.caller.principal, Principal::Replicator) {
        return Err(S3Error::AccessDenied(
            "only a peer region's replication sends bucket and key records",
        ));
    }
    let body = req.read_small_body(RECORDS_BODY_LIMIT).await?;
    serde_json::from_slice(&body).map_err(|e| S3Error::InvalidArgument(format!("{what}: {e}")))
}
