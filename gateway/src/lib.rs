//! The Tessera S3 gateway: SigV4 authentication, the S3 operations, and the read and write paths
//! that erasure-code objects across the storage nodes.
//!
//! Layers, each using only those below it:
//! - `s3`: the protocol alone (signatures, payloads, checksums, XML, S3 errors);
//! - `ops`: cluster operations (placement, quorum calls, read, write, delete, repair, listing);
//! - `background`: workers that run on their own (liveness probe, heal, lifecycle expiry), on `ops`;
//! - `api`: one handler module per S3 resource, parsing a request, calling `ops` and rendering
//!   the answer; `server` accepts connections and hands requests to `api`.

mod api;
mod background;
pub mod config;
mod metrics;
mod ops;
mod s3;
mod server;

pub use config::{GatewayConfig, SecretKey};
pub use s3::error::S3Error;
pub use s3::md5_lanes;
pub use server::run;

/// The request parsers, for the fuzz targets in `fuzz/`: not an interface to build on.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::api::{
        copy, cors, encryption, lifecycle, listing, multi_delete, object, object_lock, tagging,
        versioning,
    };
    pub use crate::s3::{
        acl, auth, http, payload, policy, post_form, post_policy, sigv2, sigv4, xml,
    };
}
