//! CopyObject and UploadPartCopy: the source is read with the read path (`find_version`,
//! `read::stream`) and its body fed straight into the write path, so a copy streams like a GET
//! piped into a PUT and never holds the object in memory.

use crate::api::access::{hide_absence, owner_id, Verdict};
use crate::api::encryption::{self, COPY_SOURCE_SSE_C, SSE_C};
use crate::api::listing::iso8601;
use crate::api::object::{stored_headers, MAX_PUT_SIZE};
use crate::api::unsupported::Operation;
use crate::api::{Gateway, S3Request};
use crate::ops::encryption::Sse;
use crate::ops::error::OpError;
use crate::ops::lookup::{find_version, version_id, Found};
use crate::ops::read;
use crate::ops::write::{write_object, NewObject};
use crate::s3::checksum::Expected;
use crate::s3::error::S3Error;
use crate::s3::http::{evaluate_prefixed, Condition};
use crate::s3::payload::PayloadReader;
use crate::s3::response::{xml_response, S3Response};
use crate::s3::xml::XmlWriter;
use chrono::DateTime;
use node_rpc::body::{empty, HttpBody};
use node_rpc::record::{Encryption, StoredChecksum, VersionRef};
use percent_encoding::percent_decode_str;

/// Where a copy reads from: `x-amz-copy-source` as `[/]bucket/key[?versionId=...]`, URL-encoded.
fn copy_source(req: &S3Request) -> Result<(String, String, Option<VersionRef>), S3Error> {
    let raw = req.header("x-amz-copy-source").unwrap_or("");
    let (path, version) = match raw.split_once('?') {
        Some((p, q)) => (
            p,
            Some(q.strip_prefix("versionId=").ok_or_else(|| {
                S3Error::InvalidArgument(
                    "Invalid copy source: only versionId may follow '?'".into(),
                )
            })?),
        ),
        None => (raw, None),
    };
    let which = version.map(crate::s3::http::version_id).transpose()?;
    let decoded = percent_decode_str(path.strip_prefix('/').unwrap_or(path))
        .decode_utf8()
        .map_err(|_| S3Error::InvalidArgument("Invalid copy source encoding".into()))?;
    match decoded.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
            Ok((bucket.to_string(), key.to_string(), which))
        }
        _ => Err(S3Error::InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey".into(),
        )),
    }
}

/// A copy's source version.
struct CopySource {
    bucket: String,
    key: String,
    found: Found,
    /// Its `x-amz-copy-source-version-id`, when the source bucket has versioning.
    version_id: Option<String>,
    /// The request named the version (copying an old version over its key restores it).
    named: bool,
    /// The keys to read it with, when it is encrypted.
    sse: Option<Sse>,
}

/// The source's current version (or the one `versionId` names), after its
/// `x-amz-copy-source-if-*` conditions (412 when one fails, as S3 answers for copies, never 304).
async fn find_source(gw: &Gateway, req: &S3Request) -> Result<CopySource, S3Error> {
    let (bucket, key, which) = copy_source(req)?;
    let source_bucket = gw.cluster.bucket(&bucket).await?;
    if req
        .header("x-amz-source-expected-bucket-owner")
        .is_some_and(|expected| expected != owner_id(&source_bucket))
    {
        return Err(S3Error::AccessDenied("the source bucket has another owner"));
    }
    // The source is read as a GetObject of it would be, its ACL included.
    let verdict = req
        .caller
        .verdict(&source_bucket, Operation::GetObject, Some(&key))?;
    let found = match find_version(&gw.cluster, &source_bucket, &key, which, false).await {
        Err(e) if matches!(verdict, Verdict::ObjectAcl(_)) => Err(hide_absence(e)),
        Err(OpError::DeleteMarkerVersion { .. }) => Err(S3Error::InvalidRequest(
            "The source of a copy request may not specifically refer to a delete marker by version id.".into(),
        )),
        Err(OpError::DeleteMarker { .. }) => Err(S3Error::NoSuchKey),
        other => other.map_err(S3Error::from),
    }?;
    match verdict {
        Verdict::Allowed => {}
        Verdict::Denied(e) => return Err(e),
        Verdict::ObjectAcl(permission) => {
            req.caller
                .check_object(&source_bucket, &found.record, permission)?
        }
    }
    let sse = encryption::for_object(gw, req, &found.record, COPY_SOURCE_SSE_C)?;
    let version_id = version_id(&source_bucket, found.record.version_ref());
    let modified = DateTime::from_timestamp_millis(found.record.last_modified().unix_millis())
        .unwrap_or_default();
    match evaluate_prefixed(
        &req.parts,
        "x-amz-copy-source-",
        &found.record.etag,
        modified,
    ) {
        Condition::Proceed => Ok(CopySource {
            bucket,
            key,
            found,
            version_id,
            named: which.is_some(),
            sse,
        }),
        Condition::NotModified | Condition::Failed => Err(S3Error::PreconditionFailed),
    }
}

/// Bytes `[start, end]` of the source (decrypted with `sse`) as a body the write path can read.
async fn source_body(
    gw: &Gateway,
    found: Found,
    (start, end): (u64, u64),
    sse: Option<Sse>,
) -> Result<(PayloadReader, u64), S3Error> {
    let len = if found.record.size == 0 {
        0
    } else {
        end + 1 - start
    };
    let body: HttpBody = if len == 0 {
        empty()
    } else {
        read::stream(gw.cluster.clone(), found, start, end, sse).await?
    };
    Ok((PayloadReader::from_body(body, len), len))
}

/// A source that breaks off part-way is the store's failure, not the client's.
fn source_error(e: OpError) -> OpError {
    match e {
        OpError::Request(S3Error::IncompleteBody) => {
            OpError::Unavailable("reading the copy source failed part-way".into())
        }
        other => other,
    }
}

#[derive(PartialEq)]
enum Directive {
    Copy,
    Replace,
}

fn directive(req: &S3Request, name: &str, what: &str) -> Result<Directive, S3Error> {
    match req.header(name) {
        None | Some("COPY") => Ok(Directive::Copy),
        Some("REPLACE") => Ok(Directive::Replace),
        Some(_) => Err(S3Error::InvalidArgument(format!(
            "Unknown {what} directive."
        ))),
    }
}

/// A copy's answer, with the source version it read, the version it made (if any) and how that
/// is encrypted.
fn copy_result(
    root: &'static str,
    etag: &str,
    version: node_rpc::record::Version,
    checksum: Option<&StoredChecksum>,
    source_version_id: Option<String>,
    version_id: Option<String>,
    encryption: Option<&Encryption>,
) -> S3Response {
    let mut xml = XmlWriter::new(root);
    xml.elem("LastModified", iso8601(version))
        .elem("ETag", format!("\"{etag}\""));
    if let Some(c) = checksum {
        xml.elem(&format!("Checksum{}", c.algorithm), &c.value);
    }
    let mut response = xml_response(xml);
    encryption::insert_headers(response.headers_mut(), encryption);
    let headers = [
        ("x-amz-copy-source-version-id", source_version_id),
        ("x-amz-version-id", version_id),
    ];
    for (name, value) in headers {
        if let Some(value) = value.and_then(|v| v.parse().ok()) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

pub async fn copy_object(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let metadata = directive(&req, "x-amz-metadata-directive", "metadata")?;
    let tagging = directive(&req, "x-amz-tagging-directive", "tagging")?;
    let dest = gw.cluster.bucket(bucket).await?;
    let source = find_source(gw, &req).await?;
    let found = source.found;
    // Asking for encryption is a change, as in S3: it rewrites an object in place encrypted.
    let encrypts = req.header("x-amz-server-side-encryption").is_some()
        || encryption::has_customer_key(&req.parts.headers, SSE_C);
    if source.bucket == bucket
        && source.key == key
        && !source.named
        && !encrypts
        && metadata == Directive::Copy
        && tagging == Directive::Copy
    {
        return Err(S3Error::InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.".into(),
        ));
    }
    if found.record.size > MAX_PUT_SIZE {
        return Err(S3Error::InvalidRequest(format!(
            "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_PUT_SIZE}"
        )));
    }
    let headers = match metadata {
        Directive::Copy => found.record.headers.clone(),
        Directive::Replace => stored_headers(&req)?,
    };
    let tags = match tagging {
        Directive::Copy => found.record.tags.clone(),
        Directive::Replace => crate::api::tagging::from_header(req.header("x-amz-tagging"))?,
    };
    // The source's lock stays with the source, as in S3: the copy gets what this request asks
    // for, or the destination bucket's default.
    let lock = crate::api::object_lock::requested(&req, &dest)?;
    // The source's encryption stays with the source too: the copy is encrypted as asked here.
    let sse = encryption::for_write(gw, &req, &dest)?;
    let acl = crate::api::acl::for_new_object(gw, &dest, &req.caller, &req.parts.headers).await?;
    let size = found.record.size;
    let (mut payload, _) = source_body(gw, found, (0, size.saturating_sub(1)), source.sse).await?;
    let written = write_object(
        &gw.cluster,
        &dest,
        key,
        NewObject {
            size,
            headers,
            tags,
            lock,
            sse,
            acl,
            replica: None,
        },
        &mut payload,
        &Expected::default(),
        None,
    )
    .await
    .map_err(source_error)?;
    Ok(copy_result(
        "CopyObjectResult",
        &written.etag,
        written.version,
        None,
        source.version_id,
        written.version_id,
        written.encryption.as_ref(),
    ))
}

/// `x-amz-copy-source-range: bytes=first-last`, both required, within the source.
pub fn copy_range(value: Option<&str>, size: u64) -> Result<(u64, u64), S3Error> {
    let Some(value) = value else {
        return Ok((0, size.saturating_sub(1)));
    };
    let malformed = || {
        S3Error::InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy".into(),
        )
    };
    let (first, last) = value
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(malformed)?;
    let first: u64 = first.trim().parse().map_err(|_| malformed())?;
    let last: u64 = last.trim().parse().map_err(|_| malformed())?;
    if first > last {
        return Err(malformed());
    }
    if last >= size {
        return Err(S3Error::InvalidRequest(format!(
            "Range specified is not valid for source object of size: {size}"
        )));
    }
    Ok((first, last))
}

pub async fn upload_part_copy(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    upload_id: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let (number, dest, upload) =
        crate::api::multipart::open_part(gw, bucket, key, upload_id, &req).await?;
    let CopySource {
        found,
        version_id,
        sse: source_sse,
        ..
    } = find_source(gw, &req).await?;
    let sse = encryption::for_read(gw, &req, upload.encryption.as_ref(), SSE_C)?;
    let (start, end) = copy_range(req.header("x-amz-copy-source-range"), found.record.size)?;
    if found.record.size > 0 && end + 1 - start > MAX_PUT_SIZE {
        return Err(S3Error::EntityTooLarge);
    }
    let (mut payload, len) = source_body(gw, found, (start, end), source_sse).await?;
    let stored = crate::api::multipart::store_upload_part(
        gw,
        &dest,
        key,
        upload_id,
        crate::api::multipart::UploadPart {
            number,
            size: len,
            sse,
        },
        &mut payload,
        &Expected {
            compute: crate::api::multipart::checksum_of(&upload).map(|(a, _)| a),
            ..Expected::default()
        },
    )
    .await
    .map_err(|e| source_error(e.into()))?;
    Ok(copy_result(
        "CopyPartResult",
        &stored.0.data.md5,
        stored.1,
        stored.0.data.checksum.as_ref(),
        version_id,
        None,
        upload.encryption.as_ref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(copy_range(None, 10).unwrap(), (0, 9));
        assert_eq!(copy_range(Some("bytes=2-5"), 10).unwrap(), (2, 5));
        assert!(matches!(
            copy_range(Some("bytes=2-10"), 10),
            Err(S3Error::InvalidRequest(_))
        ));
        for bad in ["bytes=5-2", "bytes=-3", "bytes=3-", "2-5", "bytes=a-b"] {
            assert!(
                matches!(copy_range(Some(bad), 10), Err(S3Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }
}
