//! PutObject, GetObject, HeadObject and DeleteObject.

use crate::checksum::Expected;
use crate::error::S3Error;
use crate::get;
use crate::http_util::{evaluate_conditions, parse_range, Condition};
use crate::payload::PayloadReader;
use crate::put::{commit_quorum, store_part, PartPlan};
use crate::router::{Gateway, S3Request, S3Response};
use chrono::DateTime;
use erasure::StripeLayout;
use http::{Response, StatusCode};
use storage_node::body::empty;
use storage_node::protocol::CommitRequest;
use storage_node::record::{
    fragment_id, BucketRecord, ObjectRecord, PartData, StoredChecksum, Version,
};

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

/// The headers of a PUT (or CreateMultipartUpload) that the object keeps.
pub fn stored_headers(req: &S3Request) -> Vec<(String, String)> {
    req.parts
        .headers
        .iter()
        .filter(|(name, _)| {
            STORED_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("x-amz-meta-")
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect()
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
    let headers = stored_headers(&req);
    let tags = crate::tagging::from_header(req.header("x-amz-tagging"))?;
    check_write_conditions(gw, &bucket, key, &req).await?;
    let mut payload = PayloadReader::new(req.body, req.auth, size);
    let written = write_object(
        gw,
        &bucket,
        key,
        NewObject {
            size,
            headers,
            tags,
        },
        &mut payload,
        &expected,
    )
    .await?;
    let mut response =
        Response::builder().header(http::header::ETAG, format!("\"{}\"", written.etag));
    if let Some(c) = &written.checksum {
        response = response.header(
            format!("x-amz-checksum-{}", c.algorithm.to_ascii_lowercase()),
            &c.value,
        );
    }
    Ok(response.body(empty()).expect("response parts are valid"))
}

/// What a new object version keeps besides its bytes.
pub struct NewObject {
    pub size: u64,
    pub headers: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

/// A committed object version.
pub struct Written {
    pub etag: String,
    pub checksum: Option<StoredChecksum>,
    pub version: Version,
}

/// Stores `payload` as the new version of `key` and commits it to a write quorum of its holders.
pub async fn write_object(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    object: NewObject,
    payload: &mut PayloadReader,
    expected: &Expected,
) -> Result<Written, S3Error> {
    let size = object.size;
    let version = Version::now();
    let holders = gw.cluster.write_holders(&bucket.id, key);
    let plan = PartPlan {
        holders: &holders,
        layout: stripe_layout(gw, size),
        number: 1,
        fragment_id: fragment_id(&[&bucket.id, key.as_bytes(), version.to_string().as_bytes()]),
        inline: size <= gw.config.inline_threshold,
    };
    let stored = store_part(&gw.cluster, &gw.codec, plan, payload, expected).await?;
    let etag = stored.data.md5.clone();
    let checksum = stored.verified.checksum.clone();
    let record_for = |fragment: u8| ObjectRecord {
        version,
        deleted: false,
        size,
        etag: etag.clone(),
        headers: object.headers.clone(),
        checksum: checksum.clone(),
        data_shards: gw.codec.data_shards() as u8,
        parity_shards: gw.codec.parity_shards() as u8,
        fragment,
        parts: vec![stored.for_holder(fragment as usize)],
        tags: object.tags.clone(),
        modified: None,
    };
    commit_record(gw, bucket, key, &holders, &stored.stored, record_for, None).await?;
    Ok(Written {
        etag,
        checksum,
        version,
    })
}

/// Conditional writes: `If-None-Match: *` (412 when the key has a live version) and
/// `If-Match: "etag"` (404 when it has none, 412 when its ETag differs).
///
/// Not atomic: the current version is read from a read quorum of the holders before the data is
/// stored, and nothing holds the key between that check and the commit. Two conditional writes
/// racing on one key (through one gateway or several) can both pass the check; the holders then
/// keep the one with the later version (last writer wins), and both clients are told they
/// succeeded. S3 itself would fail the loser with 409 ConditionalRequestConflict. What the check
/// does guarantee is that a write acknowledged before this request started is seen (R + W > k+m).
pub async fn check_write_conditions(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    req: &S3Request,
) -> Result<(), S3Error> {
    let if_match = req.header("if-match");
    let if_none_match = req.header("if-none-match");
    if if_match.is_none() && if_none_match.is_none() {
        return Ok(());
    }
    if if_none_match.is_some_and(|v| v.trim() != "*") {
        return Err(S3Error::NotImplemented(
            "If-None-Match with a value other than * on a write",
        ));
    }
    let current = get::find(&gw.cluster, &bucket.id, key)
        .await?
        .map(|found| found.record.etag);
    if if_none_match.is_some() && current.is_some() {
        return Err(S3Error::PreconditionFailed);
    }
    if let Some(list) = if_match {
        let etag = current.ok_or(S3Error::NoSuchKey)?;
        let matches = list
            .split(',')
            .map(|t| t.trim().trim_matches('"'))
            .any(|t| t == "*" || t == etag);
        if !matches {
            return Err(S3Error::PreconditionFailed);
        }
    }
    Ok(())
}

pub fn stripe_layout(gw: &Gateway, size: u64) -> StripeLayout {
    StripeLayout {
        size,
        data_shards: gw.codec.data_shards(),
        block_size: gw.config.block_size,
    }
}

/// Commits a record to every holder that stored its data, each with its own fragment index.
pub async fn commit_record(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    holders: &[crate::cluster::Holder<'_>],
    stored: &[bool],
    record_for: impl Fn(u8) -> ObjectRecord,
    upload_id: Option<&str>,
) -> Result<(), S3Error> {
    commit_quorum(&gw.cluster, holders, stored, |h| {
        let client = gw.cluster.client_for(&h);
        let request = CommitRequest {
            bucket: bucket.id,
            key: key.to_string(),
            record: record_for(h.fragment),
            upload_id: upload_id.map(str::to_string),
        };
        async move { client.commit(&h.node.addr, &request).await }
    })
    .await
}

pub async fn get_object(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
    head_only: bool,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let found = get::find(&gw.cluster, &bucket.id, key)
        .await?
        .ok_or(S3Error::NoSuchKey)?;
    let record = &found.record;
    let modified =
        DateTime::from_timestamp_millis(record.last_modified().unix_millis()).unwrap_or_default();
    let last_modified = httpdate::fmt_http_date(modified.into());
    let etag = format!("\"{}\"", record.etag);
    match evaluate_conditions(&req.parts, &record.etag, modified) {
        Condition::Proceed => {}
        Condition::Failed => return Err(S3Error::PreconditionFailed),
        Condition::NotModified => {
            return Ok(Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .header(http::header::ETAG, &etag)
                .header(http::header::LAST_MODIFIED, &last_modified)
                .body(empty())
                .expect("response parts are valid"))
        }
    }
    let part_number = req
        .query
        .get("partNumber")
        .map(|n| {
            n.parse::<usize>()
                .map_err(|_| S3Error::InvalidArgument("bad partNumber".into()))
        })
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
    let mut has_type = false;
    for (name, value) in &record.headers {
        has_type |= name == "content-type";
        let overridden = req.query.get(&format!("response-{name}"));
        response = response.header(name, overridden.unwrap_or(value));
    }
    if !has_type {
        let content_type = req
            .query
            .get("response-content-type")
            .unwrap_or("binary/octet-stream");
        response = response.header(http::header::CONTENT_TYPE, content_type);
    }
    if part_number.is_some() {
        response = response.header("x-amz-mp-parts-count", record.parts.len());
    }
    if !record.tags.is_empty() {
        response = response.header("x-amz-tagging-count", record.tags.len());
    }
    if let Some(c) = record.checksum.as_ref().filter(|_| {
        !partial
            && req
                .header("x-amz-checksum-mode")
                .is_some_and(|m| m.eq_ignore_ascii_case("enabled"))
    }) {
        response = response.header(
            format!("x-amz-checksum-{}", c.algorithm.to_ascii_lowercase()),
            &c.value,
        );
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
    let body = if head_only || len == 0 {
        empty()
    } else {
        get::stream(gw.cluster.clone(), gw.codec.clone(), found, start, end)
    };
    Ok(response.body(body).expect("response parts are valid"))
}

/// The byte span of part `number` (1-based) of an object.
fn part_span(parts: &[PartData], number: usize) -> Result<Option<(u64, u64)>, S3Error> {
    if number == 0 || number > parts.len() {
        return Err(S3Error::InvalidRange);
    }
    let start: u64 = parts[..number - 1].iter().map(|p| p.size).sum();
    let size = parts[number - 1].size;
    Ok((size > 0).then(|| (start, start + size - 1)))
}

pub async fn delete_object(gw: &Gateway, bucket: &str, key: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    write_tombstone(gw, &bucket, key).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(empty())
        .expect("response parts are valid"))
}

/// Deletes a key: a tombstone committed to a write quorum of its holders.
pub async fn write_tombstone(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
) -> Result<(), S3Error> {
    let holders = gw.cluster.write_holders(&bucket.id, key);
    let tombstone = ObjectRecord::tombstone(Version::now());
    let all = vec![true; holders.len()];
    commit_record(gw, bucket, key, &holders, &all, |_| tombstone.clone(), None).await
}
