//! PutObject, GetObject, HeadObject and DeleteObject, with versions and conditional writes.

use crate::api::access::Principal;
use crate::api::encryption::{self, SSE_C};
use crate::api::{fallback, object_lock, replica, Gateway, S3Request};
use crate::ops::commit::check_conditions;
use crate::ops::delete::{remove, remove_replica};
use crate::ops::error::OpError;
use crate::ops::lookup::{find_version, version_id};
use crate::ops::read;
use crate::ops::replica::{self as replica_status, VERSION_OF_HEADER};
use crate::ops::write::{write_object, NewObject};
use crate::s3::checksum::{Algorithm, ChecksumType};
use crate::s3::error::S3Error;
use crate::s3::http::{evaluate_conditions, parse_range, part_number, Condition};
use crate::s3::response::{header_value, response_overrides, Finish, S3Response};
use chrono::DateTime;
use http::{Response, StatusCode};
use node_rpc::body::empty;
use node_rpc::record::{BucketRecord, ObjectRecord, PartData};

/// The largest object a single PUT (or one part) may carry, as in S3.
pub const MAX_PUT_SIZE: u64 = 5 << 30;

/// Request headers kept with an object and returned on GET.
const STORED_HEADERS: [&str; 6] = [
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
];

/// S3's limit on user metadata: the bytes of its names (without `x-amz-meta-`) and values.
const MAX_USER_METADATA: usize = 2048;

/// The headers of a PUT (or CreateMultipartUpload) that the object keeps.
pub fn stored_headers(req: &S3Request) -> Result<Vec<(String, String)>, S3Error> {
    kept_headers(
        req.parts
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
    )
}

/// Of a write's headers (or a browser upload's fields), names lowercased, those the object keeps.
pub fn kept_headers<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<(String, String)>, S3Error> {
    let headers: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(name, _)| STORED_HEADERS.contains(name) || name.starts_with("x-amz-meta-"))
        .filter_map(|(name, value)| {
            let value = if name == "content-encoding" {
                without_aws_chunked(value)?
            } else {
                value.to_string()
            };
            Some((name.to_string(), value))
        })
        .collect();
    let user_metadata: usize = headers
        .iter()
        .filter_map(|(name, value)| Some(name.strip_prefix("x-amz-meta-")?.len() + value.len()))
        .sum();
    if user_metadata > MAX_USER_METADATA {
        return Err(S3Error::MetadataTooLarge);
    }
    Ok(headers)
}

/// A `Content-Encoding` without `aws-chunked`, which describes how the request carried the body
/// (signed chunks), not the object; `None` when nothing else is left, as S3 then keeps none.
fn without_aws_chunked(value: &str) -> Option<String> {
    let is_chunked = |coding: &str| coding.trim().eq_ignore_ascii_case("aws-chunked");
    if !value.split(',').any(is_chunked) {
        return Some(value.to_string());
    }
    let kept: Vec<&str> = value
        .split(',')
        .filter(|coding| !is_chunked(coding) && !coding.trim().is_empty())
        .map(str::trim)
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

pub async fn put_object(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let size = req.content_length()?;
    if size > MAX_PUT_SIZE {
        return Err(S3Error::EntityTooLarge);
    }
    let expected = req.expected_digests()?;
    let headers = stored_headers(&req)?;
    let tags = crate::api::tagging::from_header(req.header("x-amz-tagging"))?;
    let lock = object_lock::requested(&req, &bucket)?;
    if !lock.is_none() {
        // As S3: a write that locks its object must prove its bytes arrived intact.
        req.require_integrity()?;
    }
    let sse = encryption::for_write(gw, &req, &bucket)?;
    let acl = crate::api::acl::for_new_object(gw, &bucket, &req.caller, &req.parts.headers).await?;
    let replica = replica::requested(&req)?;
    let precondition = check_conditions(
        &gw.cluster,
        &bucket,
        key,
        req.header("if-match"),
        req.header("if-none-match"),
    )
    .await?;
    let mut payload = req.payload(size);
    let written = write_object(
        &gw.cluster,
        &bucket,
        key,
        NewObject {
            size,
            headers,
            tags,
            lock,
            sse,
            acl,
            replica,
        },
        &mut payload,
        &expected,
        precondition.as_ref(),
    )
    .await?;
    let mut response = encryption::with_headers(
        Response::builder().header(http::header::ETAG, format!("\"{}\"", written.etag)),
        written.encryption.as_ref(),
    );
    if let Some(c) = &written.checksum {
        response = response.header(Algorithm::header_of(c), &c.value);
    }
    if let Some(id) = &written.version_id {
        response = response.header("x-amz-version-id", id);
    }
    response.finish(empty())
}

pub async fn get_object(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
    head_only: bool,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let which = req.version_param()?;
    let whole = !head_only && req.header("range").is_none() && !req.query.has("partNumber");
    let mut looked_again = false;
    loop {
        let found = match find_version(&gw.cluster, &bucket, key, which, whole).await {
            Ok(found) => found,
            Err(missed @ (OpError::NoSuchKey | OpError::NoSuchVersion))
                if fallback::applies(gw, &bucket, &req) =>
            {
                return fallback::read(gw, &bucket, key, &req, head_only, missed.into()).await
            }
            Err(e) => return Err(e.into()),
        };
        let sse = encryption::for_object(gw, &req, &found.record, SSE_C)?;
        let (mut response, span) = object_head(&bucket, &req, &found.record)?;
        if let Some(status) = replica_status::status(&found.record, found.outbox.as_ref()) {
            response = response.header("x-amz-replication-status", status);
        }
        let response = encryption::with_headers(response, found.record.encryption.as_ref());
        let Some((start, end)) = span.filter(|_| !head_only) else {
            return response.finish(empty());
        };
        match read::stream(gw.cluster.clone(), found, start, end, sse).await {
            Ok(body) => return response.finish(body),
            // An overwrite committed between the lookup and the first fragment reads removes the
            // fragments that were found; a fresh lookup finds the new version.
            Err(e) if looked_again => return Err(e.into()),
            Err(_) => looked_again = true,
        }
    }
}

/// The status and headers of a GET or HEAD of `record`, and the span of its bytes to send
/// (`None`: no body).
fn object_head(
    bucket: &BucketRecord,
    req: &S3Request,
    record: &ObjectRecord,
) -> Result<(http::response::Builder, Option<(u64, u64)>), S3Error> {
    let modified =
        DateTime::from_timestamp_millis(record.last_modified().unix_millis()).unwrap_or_default();
    let last_modified = httpdate::fmt_http_date(modified.into());
    let etag = format!("\"{}\"", record.etag);
    match evaluate_conditions(&req.parts, &record.etag, modified) {
        Condition::Proceed => {}
        Condition::Failed => return Err(S3Error::PreconditionFailed),
        Condition::NotModified => {
            let response = Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .header(http::header::ETAG, &etag)
                .header(http::header::LAST_MODIFIED, &last_modified);
            return Ok((response, None));
        }
    }
    let part_number = req
        .query
        .get("partNumber")
        .map(|n| part_number(n).map(|n| n as usize))
        .transpose()?;
    let (span, partial) = match part_number {
        Some(n) => (part_span(&record.parts, n)?, record.parts.len() > 1),
        None => match parse_range(req.header("range"), record.size)? {
            Some(span) => (Some(span), true),
            None => (None, false),
        },
    };
    let mut response = Response::builder()
        .header(http::header::ETAG, &etag)
        .header(http::header::LAST_MODIFIED, &last_modified)
        .header(http::header::ACCEPT_RANGES, "bytes");
    if let Some(id) = version_id(bucket, record.version_ref()) {
        response = response.header("x-amz-version-id", id);
    }
    if matches!(req.caller.principal, Principal::Replicator) {
        response = response.header(VERSION_OF_HEADER, record.version.to_string());
    }
    let overrides = response_overrides(&req.query)?;
    for (name, value) in &record.headers {
        if !overrides.iter().any(|(o, _)| o.as_str() == name) {
            response = response.header(name, header_value(value, name)?);
        }
    }
    let has_type = record
        .headers
        .iter()
        .any(|(name, _)| name == "content-type");
    if !has_type
        && !overrides
            .iter()
            .any(|(o, _)| o == http::header::CONTENT_TYPE)
    {
        response = response.header(http::header::CONTENT_TYPE, "binary/octet-stream");
    }
    for (name, value) in overrides {
        response = response.header(name, value);
    }
    if part_number.is_some() {
        response = response.header("x-amz-mp-parts-count", record.parts.len());
    }
    if !record.tags.is_empty() {
        response = response.header("x-amz-tagging-count", record.tags.len());
    }
    for (name, value) in crate::s3::object_lock::lock_headers(&record.lock) {
        response = response.header(name, value);
    }
    let checksum_mode = req
        .header("x-amz-checksum-mode")
        .is_some_and(|m| m.eq_ignore_ascii_case("enabled"));
    // The object's checksum covers all of it; with `partNumber` a multipart object shows that
    // part's own (the one part of a simple object is all of it).
    let shown = match part_number {
        _ if !checksum_mode => None,
        Some(n) if record.parts.len() > 1 => {
            record.parts[n - 1].checksum.as_ref().map(|c| (c, None))
        }
        _ if partial => None,
        _ => record
            .checksum
            .as_ref()
            .map(|c| (c, Some(ChecksumType::of(c)))),
    };
    if let Some((c, kind)) = shown {
        response = response.header(Algorithm::header_of(c), &c.value);
        if let Some(kind) = kind {
            response = response.header("x-amz-checksum-type", kind.name());
        }
    }
    let (start, end) = span.unwrap_or((0, record.size.saturating_sub(1)));
    let len = if record.size == 0 { 0 } else { end + 1 - start };
    if partial {
        response = response.status(StatusCode::PARTIAL_CONTENT).header(
            http::header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{}", record.size),
        );
    }
    response = response.header(http::header::CONTENT_LENGTH, len);
    Ok((response, (len > 0).then_some((start, end))))
}

/// The byte span of part `number` (1-based) of an object; an object not uploaded in parts is
/// its own part 1, as in S3. A part the object does not have is S3's `InvalidPart`.
fn part_span(parts: &[PartData], number: usize) -> Result<Option<(u64, u64)>, S3Error> {
    if number == 0 || number > parts.len() {
        return Err(S3Error::InvalidPart);
    }
    let start: u64 = parts[..number - 1].iter().map(|p| p.size).sum();
    let size = parts[number - 1].size;
    Ok((size > 0).then(|| (start, start + size - 1)))
}

pub async fn delete_object(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let which = req.version_param()?;
    let bypass = object_lock::bypass_governance(&req, &bucket);
    let removed = match replica::requested(&req)? {
        Some(replica) => remove_replica(&gw.cluster, &bucket, key, replica, which).await?,
        None => remove(&gw.cluster, &bucket, key, which, bypass).await?,
    };
    let mut response = Response::builder().status(StatusCode::NO_CONTENT);
    if removed.delete_marker {
        response = response.header("x-amz-delete-marker", "true");
    }
    if let Some(id) = &removed.version_id {
        response = response.header("x-amz-version-id", id);
    }
    response.finish(empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_is_not_an_encoding_of_the_object() {
        assert_eq!(
            without_aws_chunked("gzip, aws-chunked").as_deref(),
            Some("gzip")
        );
        assert_eq!(
            without_aws_chunked("aws-chunked,gzip").as_deref(),
            Some("gzip")
        );
        assert_eq!(without_aws_chunked("aws-chunked"), None);
        assert_eq!(without_aws_chunked("gzip,br").as_deref(), Some("gzip,br"));
    }
}
