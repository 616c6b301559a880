//! PutObject, GetObject, HeadObject and DeleteObject, with versions and conditional writes.

use crate::checksum::{ChecksumType, Expected};
use crate::cluster::Holder;
use crate::error::S3Error;
use crate::get::{self, Found};
use crate::http_util::{evaluate_conditions, parse_range, Condition, Query};
use crate::payload::PayloadReader;
use crate::put::{commit_quorum, remove_fragments, store_part, PartPlan};
use crate::router::{Gateway, S3Request, S3Response};
use chrono::DateTime;
use erasure::{Codec, StripeLayout};
use futures::future::join_all;
use http::{Response, StatusCode};
use storage_node::body::empty;
use storage_node::protocol::{ClaimAnswer, ClaimRequest, CommitRequest, PurgeRequest};
use storage_node::record::{
    fragment_id, BucketRecord, ObjectRecord, PartData, StoredChecksum, Version, VersionRef,
    Versioning,
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
    let precondition = check_write_conditions(gw, &bucket, key, &req).await?;
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
        precondition.as_ref(),
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
    if let Some(id) = &written.version_id {
        response = response.header("x-amz-version-id", id);
    }
    Ok(response.body(empty()).expect("response parts are valid"))
}

/// The `x-amz-version-id` S3 shows for a version: none in a bucket that never had versioning.
pub fn version_id(bucket: &BucketRecord, version: VersionRef) -> Option<String> {
    bucket.versioning.map(|_| version.to_string())
}

/// The version a request names with `versionId`, if any.
pub fn version_param(query: &Query) -> Result<Option<VersionRef>, S3Error> {
    query
        .get("versionId")
        .map(|v| {
            v.parse()
                .map_err(|()| S3Error::InvalidArgument("Invalid version id specified".into()))
        })
        .transpose()
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
    /// Its `x-amz-version-id`, in a bucket that has versioning.
    pub version_id: Option<String>,
}

/// Stores `payload` as the new version of `key` and commits it to a write quorum of its holders;
/// with a precondition, only if the key is still as the condition was checked against.
#[allow(clippy::too_many_arguments)]
pub async fn write_object(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    object: NewObject,
    payload: &mut PayloadReader,
    expected: &Expected,
    precondition: Option<&Precondition>,
) -> Result<Written, S3Error> {
    let size = object.size;
    let version = Version::now();
    let versioned = bucket.versions_writes();
    let holders = gw.cluster.write_holders(&bucket.id, key);
    let fragment_id = fragment_id(&[&bucket.id, key.as_bytes(), version.to_string().as_bytes()]);
    let codec = gw.codec_for(size);
    let plan = PartPlan {
        holders: &holders,
        layout: stripe_layout(gw, codec, size),
        number: 1,
        fragment_id: fragment_id.clone(),
        inline: size <= gw.config.inline_threshold,
    };
    let stored = store_part(&gw.cluster, codec, plan, payload, expected).await?;
    let claimed = match precondition {
        Some(precondition) => {
            match claim(gw, bucket, key, &holders, &stored.stored, precondition).await {
                Ok(claimed) => Some(claimed),
                Err(e) => {
                    remove_fragments(&gw.cluster, &holders, &fragment_id, &stored.stored).await;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let etag = stored.data.md5.clone();
    let checksum = stored.verified.checksum.clone();
    let record_for = |fragment: u8| ObjectRecord {
        version,
        revision: 0,
        versioned,
        deleted: false,
        size,
        etag: etag.clone(),
        headers: object.headers.clone(),
        checksum: checksum.clone(),
        data_shards: codec.data_shards() as u8,
        parity_shards: codec.parity_shards() as u8,
        fragment,
        parts: vec![stored.for_holder(fragment as usize)],
        tags: object.tags.clone(),
        modified: None,
    };
    commit_record(
        gw,
        bucket,
        key,
        &holders,
        &stored.stored,
        record_for,
        None,
        claimed.as_ref(),
    )
    .await?;
    let version_ref = if versioned {
        VersionRef::Id(version)
    } else {
        VersionRef::Null
    };
    Ok(Written {
        etag,
        checksum,
        version,
        version_id: version_id(bucket, version_ref),
    })
}

/// What a conditional write checked: the key's newest version at the time (`None`: it had none).
pub struct Precondition {
    expected: Option<Version>,
}

/// Conditional writes: `If-None-Match: *` (412 when the key has a live version) and
/// `If-Match: "etag"` (404 when it has none, 412 when its ETag differs), checked against a read
/// quorum of the holders before the data is sent, so that a write bound to fail sends nothing.
/// The check is made atomic with the commit by `claim`. `Ok(None)`: the write is unconditional.
pub async fn check_write_conditions(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    req: &S3Request,
) -> Result<Option<Precondition>, S3Error> {
    let if_match = req.header("if-match");
    let if_none_match = req.header("if-none-match");
    if if_match.is_none() && if_none_match.is_none() {
        return Ok(None);
    }
    if if_none_match.is_some_and(|v| v.trim() != "*") {
        return Err(S3Error::NotImplemented(
            "If-None-Match with a value other than * on a write",
        ));
    }
    let newest = get::lookup(&gw.cluster, &bucket.id, key, None).await?;
    let expected = newest.as_ref().map(|found| found.record.version);
    let current = newest
        .filter(|found| !found.record.deleted)
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
    Ok(Some(Precondition { expected }))
}

/// A conditional write's claim on its key: granted by the holders marked in `granted`.
pub struct Claimed {
    token: String,
    granted: Vec<bool>,
}

/// Claims the key on the holders that stored the new data, for one conditional write: a holder
/// grants a claim while no other writer holds one and its current version is not newer than the
/// one the condition was checked against. The first holder that answers is asked alone, before
/// any other: of concurrent writers only the one it grants goes on, so they cannot split the
/// holders between them and all fail. Without a write quorum of grants the claims are released:
/// 412 when a holder has a newer version (the condition no longer holds), 409 when another
/// conditional write holds the key.
pub async fn claim(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    holders: &[Holder<'_>],
    stored: &[bool],
    precondition: &Precondition,
) -> Result<Claimed, S3Error> {
    let client = &gw.cluster.client;
    let request = ClaimRequest {
        bucket: bucket.id,
        key: key.to_string(),
        token: hex::encode(rand::random::<[u8; 16]>()),
        expected: precondition.expected,
    };
    let candidates: Vec<usize> = (0..holders.len()).filter(|&i| stored[i]).collect();
    let mut answers: Vec<Option<ClaimAnswer>> = vec![None; holders.len()];
    let mut rest = candidates.iter();
    for &i in rest.by_ref() {
        if let Ok(answer) = client.claim(&holders[i].node.addr, &request).await {
            answers[i] = Some(answer);
            break;
        }
    }
    if answers.iter().flatten().all(|a| *a == ClaimAnswer::Granted) {
        let others: Vec<usize> = rest.copied().collect();
        let replies = join_all(
            others
                .iter()
                .map(|&i| client.claim(&holders[i].node.addr, &request)),
        )
        .await;
        for (i, reply) in others.into_iter().zip(replies) {
            answers[i] = reply.ok();
        }
    }
    let granted: Vec<bool> = answers
        .iter()
        .map(|a| *a == Some(ClaimAnswer::Granted))
        .collect();
    let count = granted.iter().filter(|g| **g).count();
    let refused = if answers.contains(&Some(ClaimAnswer::Changed)) {
        S3Error::PreconditionFailed
    } else if answers.contains(&Some(ClaimAnswer::Busy)) {
        S3Error::ConditionalRequestConflict
    } else if count < gw.cluster.write_quorum {
        S3Error::ServiceUnavailable(format!(
            "{count} holders took the conditional write's claim; {} needed",
            gw.cluster.write_quorum
        ))
    } else {
        return Ok(Claimed {
            token: request.token,
            granted,
        });
    };
    let releases = holders
        .iter()
        .zip(&granted)
        .filter(|(_, g)| **g)
        .map(|(h, _)| client.release(&h.node.addr, &request));
    join_all(releases).await;
    Err(refused)
}

pub fn stripe_layout(gw: &Gateway, codec: &Codec, size: u64) -> StripeLayout {
    StripeLayout {
        size,
        data_shards: codec.data_shards(),
        block_size: gw.config.block_size,
    }
}

/// Commits a record to every holder that stored its data, each with its own fragment index; a
/// conditional write commits only where its claim was granted, and needs a write quorum of them
/// to apply it (a holder refuses once a plain write has changed the key since the claim).
#[allow(clippy::too_many_arguments)]
pub async fn commit_record<'a>(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    holders: &[Holder<'a>],
    stored: &[bool],
    record_for: impl Fn(u8) -> ObjectRecord,
    upload_id: Option<&str>,
    claimed: Option<&Claimed>,
) -> Result<(), S3Error> {
    let commit = |h: Holder<'a>| {
        let client = gw.cluster.client_for(&h);
        let request = CommitRequest {
            bucket: bucket.id,
            key: key.to_string(),
            record: record_for(h.fragment),
            upload_id: upload_id.map(str::to_string),
            claim: claimed.map(|c| c.token.clone()),
        };
        async move { client.commit(&h.node.addr, &request).await }
    };
    let Some(claimed) = claimed else {
        return commit_quorum(&gw.cluster, holders, stored, commit).await;
    };
    let answers = join_all(
        holders
            .iter()
            .zip(&claimed.granted)
            .filter(|(_, g)| **g)
            .map(|(h, _)| commit(*h)),
    )
    .await;
    let applied = answers.iter().filter(|a| matches!(a, Ok(true))).count();
    if applied >= gw.cluster.write_quorum {
        Ok(())
    } else if answers.iter().any(|a| matches!(a, Ok(false))) {
        Err(S3Error::ConditionalRequestConflict)
    } else {
        Err(S3Error::ServiceUnavailable(format!(
            "{applied} holders applied the conditional write; {} needed",
            gw.cluster.write_quorum
        )))
    }
}

pub async fn get_object(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
    head_only: bool,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let which = version_param(&req.query)?;
    let whole = !head_only && req.header("range").is_none() && !req.query.has("partNumber");
    let mut looked_again = false;
    loop {
        let found = find_version(gw, &bucket, key, which, whole).await?;
        let (response, span) = object_head(&bucket, &req, &found.record)?;
        let Some((start, end)) = span.filter(|_| !head_only) else {
            return Ok(response.body(empty()).expect("response parts are valid"));
        };
        match get::stream(gw.cluster.clone(), found, start, end).await {
            Ok(body) => return Ok(response.body(body).expect("response parts are valid")),
            // An overwrite committed between the lookup and the first fragment reads removes the
            // fragments that were found; a fresh lookup finds the new version.
            Err(e) if looked_again => return Err(e),
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
    if let Some(id) = version_id(bucket, record.version_ref()) {
        response = response.header("x-amz-version-id", id);
    }
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
        response = response.header(
            format!("x-amz-checksum-{}", c.algorithm.to_ascii_lowercase()),
            &c.value,
        );
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

/// The byte span of part `number` (1-based) of an object.
fn part_span(parts: &[PartData], number: usize) -> Result<Option<(u64, u64)>, S3Error> {
    if number == 0 || number > parts.len() {
        return Err(S3Error::InvalidRange);
    }
    let start: u64 = parts[..number - 1].iter().map(|p| p.size).sum();
    let size = parts[number - 1].size;
    Ok((size > 0).then(|| (start, start + size - 1)))
}

/// The version of a key a GET, HEAD or copy reads: the current one, or the one `which` names;
/// `whole` for a GET of all of it (see `get::lookup_to_read`).
/// A delete marker is an error: 404 NoSuchKey when current (naming the marker in a versioned
/// bucket), 405 MethodNotAllowed when asked for by its version id.
pub async fn find_version(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    which: Option<VersionRef>,
    whole: bool,
) -> Result<Found, S3Error> {
    let found = match whole {
        true => get::lookup_to_read(&gw.cluster, &bucket.id, key, which).await?,
        false => get::lookup(&gw.cluster, &bucket.id, key, which).await?,
    };
    match found {
        None if which.is_some() && bucket.versioning.is_some() => Err(S3Error::NoSuchVersion),
        None => Err(S3Error::NoSuchKey),
        Some(found) if found.record.deleted => {
            let version_id = version_id(bucket, found.record.version_ref());
            match (which, version_id) {
                (Some(_), Some(version_id)) => Err(S3Error::DeleteMarkerVersion { version_id }),
                (None, Some(version_id)) => Err(S3Error::DeleteMarker {
                    version_id: Some(version_id),
                }),
                (_, None) => Err(S3Error::NoSuchKey),
            }
        }
        Some(found) => Ok(found),
    }
}

pub async fn delete_object(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let which = version_param(&req.query)?;
    let removed = remove(gw, &bucket, key, which).await?;
    let mut response = Response::builder().status(StatusCode::NO_CONTENT);
    if removed.delete_marker {
        response = response.header("x-amz-delete-marker", "true");
    }
    if let Some(id) = &removed.version_id {
        response = response.header("x-amz-version-id", id);
    }
    Ok(response.body(empty()).expect("response parts are valid"))
}

/// What a delete did, as its response tells it.
pub struct Removed {
    /// The version deleted, or the delete marker made.
    pub version_id: Option<String>,
    /// A delete marker was made, or the version deleted was one.
    pub delete_marker: bool,
}

/// DeleteObject as S3 does it. Without a version id: a tombstone in a bucket that never had
/// versioning, a new delete marker with versioning enabled, a null delete marker (replacing the
/// null version) when suspended. With one: that version goes for good.
pub async fn remove(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    which: Option<VersionRef>,
) -> Result<Removed, S3Error> {
    match (which, bucket.versioning) {
        (None | Some(VersionRef::Null), None) => {
            write_tombstone(gw, bucket, key, false).await?;
            Ok(Removed {
                version_id: None,
                delete_marker: false,
            })
        }
        (None, Some(versioning)) => {
            let versioned = versioning == Versioning::Enabled;
            let version = write_tombstone(gw, bucket, key, versioned).await?;
            Ok(Removed {
                version_id: Some(if versioned {
                    version.to_string()
                } else {
                    VersionRef::Null.to_string()
                }),
                delete_marker: true,
            })
        }
        (Some(which), _) => {
            let delete_marker = purge(gw, bucket, key, which).await?;
            Ok(Removed {
                version_id: Some(which.to_string()),
                delete_marker,
            })
        }
    }
}

/// Deletes a key: a tombstone (or delete marker) committed to a write quorum of its holders.
pub async fn write_tombstone(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    versioned: bool,
) -> Result<Version, S3Error> {
    let holders = gw.cluster.write_holders(&bucket.id, key);
    let version = Version::now();
    let tombstone = ObjectRecord::tombstone(version, versioned);
    let all = vec![true; holders.len()];
    commit_record(
        gw,
        bucket,
        key,
        &holders,
        &all,
        |_| tombstone.clone(),
        None,
        None,
    )
    .await?;
    Ok(version)
}

/// Deletes one version for good on a write quorum of the key's holders. Returns whether it was
/// a delete marker.
async fn purge(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    which: VersionRef,
) -> Result<bool, S3Error> {
    let holders = gw.cluster.holders(&bucket.id, key);
    let request = PurgeRequest {
        bucket: bucket.id,
        key: key.to_string(),
        version: which,
    };
    let client = &gw.cluster.client;
    let was_marker = std::sync::atomic::AtomicBool::new(false);
    commit_quorum(&gw.cluster, &holders, &vec![true; holders.len()], |h| {
        let (request, was_marker) = (&request, &was_marker);
        async move {
            let removed = client.purge(&h.node.addr, request).await?;
            if removed == Some(true) {
                was_marker.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(true)
        }
    })
    .await?;
    Ok(was_marker.into_inner())
}
