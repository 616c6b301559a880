//! The S3 protocol alone: SigV4, payload decoding, checksums and the MD5 lanes, XML, the S3 error
//! codes and HTTP helpers. It knows nothing of the cluster behind the gateway.

pub mod acl;
pub mod auth;
pub mod checksum;
pub mod error;
pub mod http;
pub mod md5_lanes;
pub mod object_lock;
pub mod payload;
pub mod policy;
pub mod post_form;
pub mod post_policy;
pub mod response;
pub mod signature;
pub mod sigv2;
pub mod sigv4;
pub mod xml;
