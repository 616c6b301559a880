//! Replicas: versions made in a peer region, which its replication applies here with their own
//! version, through the S3 API: a PUT or DELETE signed with the replication key of that region
//! (`RegionConfig::replication_key_id`) and carrying the version in `x-tessera-replica-version`.

use crate::api::S3Request;
use crate::ops::write::Replica;
use crate::s3::error::S3Error;

/// The version, as its 24 hex digits.
pub const VERSION_HEADER: &str = "x-tessera-replica-version";
/// `true` when the version was made with versioning enabled, `false` for a null version.
pub const VERSIONED_HEADER: &str = "x-tessera-replica-versioned";

/// The replica a request applies, if it carries one.
pub fn requested(req: &S3Request) -> Result<Option<Replica>, S3Error> {
    let Some(version) = req.header(VERSION_HEADER) else {
        return Ok(None);
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
    Ok(Some(Replica { version, versioned }))
}
