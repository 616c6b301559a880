//! Why a cluster operation failed, in the cluster's terms, and the one place where that (and what
//! the storage nodes answer) becomes an S3 error. A node's own error text goes into the error's
//! detail, which is logged, never into the message a client sees.

use crate::s3::error::S3Error;
use node_rpc::RpcError;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Too few holders or nodes answered, or took a change; says what fell short and why.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A node said its disk is full: retrying at once will not help.
    #[error("a node's disk is full: {0}")]
    DiskFull(String),
    /// A holder refused to remove a version that Object Lock protects.
    #[error("the version is locked")]
    Locked,
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such version")]
    NoSuchVersion,
    #[error("no such upload")]
    NoSuchUpload,
    /// The key's current version is a delete marker (its version id in a versioned bucket).
    #[error("the current version is a delete marker")]
    DeleteMarker { version_id: Option<String> },
    /// The version asked for is a delete marker.
    #[error("the version is a delete marker")]
    DeleteMarkerVersion { version_id: String },
    /// The version asked for is a delete marker, which has no bytes or metadata to change.
    #[error("a delete marker cannot be changed")]
    MarkerUnchanged,
    /// A condition of the write (`If-Match`, `If-None-Match`) does not hold.
    #[error("precondition failed")]
    PreconditionFailed,
    /// Another conditional write of the key is under way.
    #[error("a concurrent conditional write")]
    Conflict,
    /// What the request asked for or sent is at fault (its body, its checksums, a feature
    /// Tessera does not have): already an S3 error.
    #[error(transparent)]
    Request(#[from] S3Error),
    /// A record that cannot be what it says (a bug, or a damaged record).
    #[error("internal: {0}")]
    Internal(String),
}

impl From<RpcError> for OpError {
    fn from(e: RpcError) -> OpError {
        if e.is_disk_full() {
            return OpError::DiskFull(e.to_string());
        }
        OpError::Unavailable(e.to_string())
    }
}

impl From<OpError> for S3Error {
    fn from(e: OpError) -> S3Error {
        match e {
            OpError::Unavailable(why) => S3Error::ServiceUnavailable(why),
            OpError::DiskFull(why) => S3Error::InsufficientStorage(why),
            OpError::Locked => S3Error::ObjectLocked,
            OpError::NoSuchBucket => S3Error::NoSuchBucket,
            OpError::NoSuchKey => S3Error::NoSuchKey,
            OpError::NoSuchVersion => S3Error::NoSuchVersion,
            OpError::NoSuchUpload => S3Error::NoSuchUpload,
            OpError::DeleteMarker { version_id } => S3Error::DeleteMarker { version_id },
            OpError::DeleteMarkerVersion { version_id } => {
                S3Error::DeleteMarkerVersion { version_id }
            }
            OpError::MarkerUnchanged => S3Error::MethodNotAllowed,
            OpError::PreconditionFailed => S3Error::PreconditionFailed,
            OpError::Conflict => S3Error::ConditionalRequestConflict,
            OpError::Request(e) => e,
            OpError::Internal(why) => S3Error::Internal(why),
        }
    }
}

impl From<RpcError> for S3Error {
    fn from(e: RpcError) -> S3Error {
        OpError::from(e).into()
    }
}
