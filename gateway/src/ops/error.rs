//! The one place where what the storage nodes answer becomes an S3 error. A node's own error text
//! goes into the error's detail, which is logged, never into the message a client sees.

use crate::s3::error::S3Error;
use node_rpc::RpcError;

impl From<RpcError> for S3Error {
    fn from(e: RpcError) -> S3Error {
        if e.is_disk_full() {
            return S3Error::InsufficientStorage(e.to_string());
        }
        S3Error::ServiceUnavailable(e.to_string())
    }
}
