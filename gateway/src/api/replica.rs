//! Replicas arrive through the S3 API: a PUT or DELETE signed with the replication key of a peer
//! region (`RegionConfig::replication_key_id`) and carrying the version in
//! `x-tessera-replica-version` (`ops::replica`).

use crate::api::S3Request;
use crate::ops::replica::{Replica, REVISION_HEADER, VERSIONED_HEADER, VERSION_HEADER};
use crate::s3::error::S3Error;

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
