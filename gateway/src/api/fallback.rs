//! Reads that fall back to a peer region (`read_fallback = true` in `[cluster.region]`). Regions
//! replicate asynchronously, so an object just written in one region may not be in another yet.
//! With the fallback on, a GET or HEAD of an object this region does not have (`NoSuchKey`,
//! `NoSuchVersion`) asks the regions the bucket replicates with, one after the other in the
//! config's order, skipping those whose link is down; the first that has it answers the client,
//! its status, headers and body passed on as they come, with `x-tessera-read-from` naming it.
//!
//! The caller was authorized here, against the bucket's record, which every region of the group
//! shares; the peer is asked with this region's replication key, which may read objects and
//! whose reads never fall back again (no request goes round the regions). What is older here
//! than in the peer is not asked for: only what is missing. Objects under a customer's key
//! (SSE-C) are not read from a peer: the key is not sent on.

use crate::api::access::Principal;
use crate::api::{Gateway, S3Request};
use crate::ops::replica::VERSION_OF_HEADER;
use crate::s3::error::S3Error;
use crate::s3::response::{Finish, S3Response};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use node_rpc::record::BucketRecord;
use s3_client::{object_path, query_value};

/// Names the region that answered a read that fell back.
pub const READ_FROM_HEADER: &str = "x-tessera-read-from";

/// The client's headers that shape the answer, passed on to the peer.
const PASSED_ON: [&str; 6] = [
    "range",
    "x-amz-checksum-mode",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// The peer's headers that are not the object's: the connection's, the peer's own request ids
/// (this gateway adds its own), and the version it tells replication.
const NOT_PASSED_BACK: [&str; 8] = [
    VERSION_OF_HEADER,
    "connection",
    "keep-alive",
    "transfer-encoding",
    "date",
    "server",
    "x-amz-request-id",
    "x-amz-id-2",
];

/// Whether a read of an object in `bucket` that missed here may ask a peer region.
pub fn applies(gw: &Gateway, bucket: &BucketRecord, req: &S3Request) -> bool {
    gw.region.as_ref().is_some_and(|r| r.read_fallback)
        && !matches!(req.caller.principal, Principal::Replicator)
        && gw.cluster.replicate(bucket).is_some()
}

/// The first answer from a peer region that has the object (or whose answer to the client's
/// conditions and range is not a miss), or the miss here, `missed`.
pub async fn read(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    req: &S3Request,
    head_only: bool,
    missed: S3Error,
) -> Result<S3Response, S3Error> {
    let (Some(replication), Some(replicate)) =
        (gw.replication.as_ref(), gw.cluster.replicate(bucket))
    else {
        return Err(missed);
    };
    let path = format!("{}{}", object_path(&bucket.name, key), query(req));
    let headers: Vec<(&str, &str)> = (PASSED_ON.iter())
        .filter_map(|name| req.header(name).map(|v| (*name, v)))
        .collect();
    let method = if head_only { "HEAD" } else { "GET" };
    for region in &replicate.targets {
        let Some(peer) = replication.reachable(region) else {
            continue;
        };
        let answer = match peer.fetch(method, &path, &headers).await {
            Ok(answer) if answers(answer.status()) => answer,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(peer = %region, error = %e, "a read could not fall back to a peer region");
                continue;
            }
        };
        let (parts, body) = answer.into_parts();
        let mut response = Response::builder()
            .status(parts.status)
            .header(READ_FROM_HEADER, region.as_str());
        for (name, value) in &parts.headers {
            if !NOT_PASSED_BACK.contains(&name.as_str()) {
                response = response.header(name, value);
            }
        }
        return response.finish(body.map_err(std::io::Error::other).boxed());
    }
    Err(missed)
}

/// Whether a peer's status is an answer to pass on: the object, or what the client's
/// conditions and range make of it. A miss, an error or a refusal there leaves the miss here.
fn answers(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::OK
            | StatusCode::PARTIAL_CONTENT
            | StatusCode::NOT_MODIFIED
            | StatusCode::PRECONDITION_FAILED
            | StatusCode::RANGE_NOT_SATISFIABLE
    )
}

/// The query of the peer's request: the version, part and response overrides the client asked
/// for, encoded as SigV4 signs them.
fn query(req: &S3Request) -> String {
    let pairs: Vec<String> = (req.query.0.iter())
        .filter(|(name, _)| {
            name == "versionId" || name == "partNumber" || name.starts_with("response-")
        })
        .map(|(name, value)| format!("{}={}", query_value(name), query_value(value)))
        .collect();
    match pairs.is_empty() {
        true => String::new(),
        false => format!("?{}", pairs.join("&")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_object_or_the_outcome_of_conditions_is_passed_on() {
        for status in [200, 206, 304, 412, 416] {
            assert!(answers(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [400, 403, 404, 405, 500, 503] {
            assert!(!answers(StatusCode::from_u16(status).unwrap()), "{status}");
        }
    }
}
