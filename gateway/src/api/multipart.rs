//! Multipart uploads: each part is erasure-coded on its own onto the key's holders; completing
//! commits one object record that lists the parts.

use crate::api::access::owner_id;
use crate::api::encryption::{self, SSE_C};
use crate::api::listing::{encode_name, iso8601, principal, url_encoding};
use crate::api::object::{stored_headers, MAX_PUT_SIZE};
use crate::api::{Gateway, S3Request};
use crate::ops::commit::commit_quorum;
use crate::ops::commit::{check_conditions, claim, commit_record};
use crate::ops::encryption::Sse;
use crate::ops::error::OpError;
use crate::ops::lookup::{find_version, version_id};
use crate::ops::repair::part_for_slot;
use crate::ops::replica::Replica;
use crate::ops::upload::{abort_upload, all_uploads, find_upload, upload_parts};
use crate::ops::write::{lock_of, NewVersion, Written};
use crate::ops::write::{store_part, PartPlan, StoredPart};
use crate::s3::checksum::{multipart_checksum, Algorithm, ChecksumType, Expected};
use crate::s3::error::S3Error;
use crate::s3::http::{number, part_number, Query};
use crate::s3::payload::PayloadReader;
use crate::s3::response::{empty_response, xml_response, Finish, S3Response};
use crate::s3::xml::{parse_complete_parts, CompletePart, XmlWriter};
use http::Response;
use md5::{Digest, Md5};
use node_rpc::body::empty;
use node_rpc::protocol::{unix_now, PartRequest, UploadRequest};
use node_rpc::record::{
    fragment_id, BucketRecord, PartData, PartRecord, StoredChecksum, UploadRecord, Version,
};
use std::collections::BTreeMap;

/// How long after a Complete a repeat of it still gets its answer (see `repeated_complete`).
const REPEATED_COMPLETE_SECS: u64 = 3600;

/// Every part but the last must be at least this large, as in S3.
const MIN_PART_SIZE: u64 = 5 << 20;

pub async fn create(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let checksum = upload_checksum(&req)?;
    let sse = encryption::for_write(gw, &req, &bucket)?;
    let acl = crate::api::acl::for_new_object(gw, &bucket, &req.caller, &req.parts.headers).await?;
    let record = UploadRecord {
        upload_id: hex::encode(rand::random::<[u8; 16]>()),
        key: key.to_string(),
        version: Version::now(),
        headers: stored_headers(&req)?,
        checksum_algorithm: checksum.map(|(a, _)| a.name().to_string()),
        checksum_type: checksum.map(|(_, t)| t.name().to_string()),
        tags: crate::api::tagging::from_header(req.header("x-amz-tagging"))?,
        lock: crate::api::object_lock::requested(&req, &bucket)?,
        encryption: sse.map(|s| s.encryption),
        acl,
    };
    let holders = gw.cluster.write_holders(&bucket.id, key);
    let request = UploadRequest {
        bucket: bucket.id,
        record: record.clone(),
    };
    commit_quorum(&gw.cluster, &holders, &vec![true; holders.len()], |h| {
        let request = &request;
        let client = gw.cluster.client_for(&h);
        async move { client.put_upload(&h.node.addr, request).await }
    })
    .await?;
    let mut xml = XmlWriter::new("InitiateMultipartUploadResult");
    xml.elem("Bucket", &bucket.name)
        .elem("Key", key)
        .elem("UploadId", &record.upload_id);
    let mut response = xml_response(xml);
    encryption::insert_headers(response.headers_mut(), record.encryption.as_ref());
    if let Some((algorithm, kind)) = checksum {
        let headers = response.headers_mut();
        headers.insert(
            "x-amz-checksum-algorithm",
            http::HeaderValue::from_static(algorithm.name()),
        );
        headers.insert(
            "x-amz-checksum-type",
            http::HeaderValue::from_static(kind.name()),
        );
    }
    Ok(response)
}

/// The checksum an upload is created with (`x-amz-checksum-algorithm`, `x-amz-checksum-type`),
/// with S3's default type and its rules on which types go with which algorithms.
fn upload_checksum(req: &S3Request) -> Result<Option<(Algorithm, ChecksumType)>, S3Error> {
    let algorithm = req
        .header("x-amz-checksum-algorithm")
        .map(|a| {
            Algorithm::from_name(a).ok_or_else(|| {
                S3Error::InvalidRequest(
                    "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]".into(),
                )
            })
        })
        .transpose()?;
    let kind = req
        .header("x-amz-checksum-type")
        .map(|t| {
            ChecksumType::from_name(t).ok_or_else(|| {
                S3Error::InvalidRequest("Value for x-amz-checksum-type header is invalid.".into())
            })
        })
        .transpose()?;
    match (algorithm, kind) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(S3Error::InvalidRequest(
            "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.".into(),
        )),
        (Some(algorithm), kind) => {
            let kind = kind.unwrap_or(ChecksumType::default_for(algorithm));
            if !kind.allowed(algorithm) {
                return Err(S3Error::InvalidRequest(format!(
                    "The {} checksum type cannot be used with the {} checksum algorithm.",
                    kind.name(),
                    algorithm.name().to_ascii_lowercase()
                )));
            }
            Ok(Some((algorithm, kind)))
        }
    }
}

/// The checksum algorithm and type an upload was created with, if any.
pub fn checksum_of(upload: &UploadRecord) -> Option<(Algorithm, ChecksumType)> {
    let algorithm = Algorithm::from_name(upload.checksum_algorithm.as_deref()?)?;
    let kind = upload
        .checksum_type
        .as_deref()
        .and_then(ChecksumType::from_name)
        .unwrap_or(ChecksumType::default_for(algorithm));
    Some((algorithm, kind))
}

/// What UploadPart and UploadPartCopy check first: the part number (1 to 10000), the bucket and
/// the upload.
pub async fn open_part(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    upload_id: &str,
    req: &S3Request,
) -> Result<(u32, BucketRecord, UploadRecord), S3Error> {
    let number = part_number(req.query.get("partNumber").unwrap_or(""))?;
    let bucket = gw.cluster.bucket(bucket).await?;
    let upload = find_upload(&gw.cluster, &bucket, key, upload_id).await?;
    Ok((number, bucket, upload))
}

pub async fn upload_part(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    upload_id: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let (number, bucket, upload) = open_part(gw, bucket, key, upload_id, &req).await?;
    let size = req.content_length()?;
    if size > MAX_PUT_SIZE {
        return Err(S3Error::EntityTooLarge);
    }
    let mut expected = req.expected_digests()?;
    // A part may come without the upload's checksum (it is computed here), not with another one.
    expected.compute = checksum_of(&upload).map(|(a, _)| a);
    if let (Some(wanted), Some((sent, _))) = (expected.compute, &expected.checksum) {
        if wanted != *sent {
            return Err(S3Error::InvalidRequest(format!(
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                wanted.name().to_ascii_lowercase(),
                sent.name().to_ascii_lowercase()
            )));
        }
    }
    let sse = encryption::for_read(gw, &req, upload.encryption.as_ref(), SSE_C)?;
    let mut payload = req.payload(size);
    let (stored, _) = store_upload_part(
        gw,
        &bucket,
        key,
        upload_id,
        UploadPart { number, size, sse },
        &mut payload,
        &expected,
    )
    .await?;
    let mut response = encryption::with_headers(
        Response::builder().header(http::header::ETAG, format!("\"{}\"", stored.data.md5)),
        upload.encryption.as_ref(),
    );
    if let Some(c) = &stored.verified.checksum {
        response = response.header(Algorithm::header_of(c), &c.value);
    }
    response.finish(empty())
}

/// One part of an upload about to be stored.
pub struct UploadPart {
    pub number: u32,
    pub size: u64,
    /// The upload's keys, when it is encrypted.
    pub sse: Option<Sse>,
}

/// Stores one part's bytes on the key's holders and records it there; returns it and its version.
pub async fn store_upload_part(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    upload_id: &str,
    part: UploadPart,
    payload: &mut PayloadReader,
    expected: &Expected,
) -> Result<(StoredPart, Version), S3Error> {
    let UploadPart { number, size, sse } = part;
    let version = Version::now();
    let holders = gw.cluster.write_holders(&bucket.id, key);
    let plan = PartPlan {
        holders: &holders,
        layout: gw.cluster.stripe_layout(&gw.cluster.codec, size),
        number,
        fragment_id: fragment_id(&[
            upload_id.as_bytes(),
            &number.to_be_bytes(),
            version.to_string().as_bytes(),
        ]),
        inline: size <= gw.cluster.inline_threshold,
        seal: sse.as_ref().map(Sse::seal),
    };
    let stored = store_part(&gw.cluster, &gw.cluster.codec, plan, payload, expected).await?;
    commit_quorum(&gw.cluster, &holders, &stored.stored, |h| {
        let client = gw.cluster.client_for(&h);
        let request = PartRequest {
            upload_id: upload_id.to_string(),
            record: PartRecord {
                version,
                slot: h.slot,
                part: stored.for_holder(h.slot as usize),
            },
        };
        // `false`: the holder has a newer version of the part, as good as this one for the quorum.
        async move { client.put_part(&h.node.addr, &request).await.map(|_| ()) }
    })
    .await?;
    Ok((stored, version))
}

pub async fn complete(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    upload_id: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let bucket_record = gw.cluster.bucket(bucket).await?;
    let upload = match find_upload(&gw.cluster, &bucket_record, key, upload_id).await {
        Err(OpError::NoSuchUpload) => {
            return repeated_complete(gw, &bucket_record, key, upload_id, req).await
        }
        found => found?,
    };
    // Checked before the parts are read, and made atomic with the commit by a claim.
    let precondition = check_conditions(
        &gw.cluster,
        &bucket_record,
        key,
        req.header("if-match"),
        req.header("if-none-match"),
    )
    .await?;
    // SSE-C headers are optional here (no bytes are read or written), but must be the upload's.
    if encryption::has_customer_key(&req.parts.headers, SSE_C) {
        encryption::for_read(gw, &req, upload.encryption.as_ref(), SSE_C)?;
    }
    let checksum = checksum_of(&upload);
    // A checksum type claimed at completion must be the upload's (S3 answers BadDigest).
    if let Some(value) = req.header("x-amz-checksum-type") {
        let claimed = ChecksumType::from_name(value).ok_or_else(|| {
            S3Error::InvalidRequest("Value for x-amz-checksum-type header is invalid.".into())
        })?;
        if Some(claimed) != checksum.map(|(_, kind)| kind) {
            return Err(S3Error::BadDigest("x-amz-checksum-type"));
        }
    }
    // The `x-amz-checksum-*` headers of a Complete claim the object's checksum, not the body's.
    let claimed = Algorithm::ALL
        .into_iter()
        .find_map(|a| Some((a, req.header(&a.header())?.trim().to_string())));
    // A peer region's version made of parts, applied as its replica (`api::replica`).
    let replica = crate::api::replica::requested(&req)?;
    let body_digests = Expected::new(req.header("content-md5"), None)?;
    let body = req.read_small_body_against(4 << 20, body_digests).await?;
    let requested = parse_complete_parts(&body)?;
    if requested.windows(2).any(|w| w[0].number >= w[1].number) {
        return Err(S3Error::InvalidPartOrder);
    }
    let (per_holder, newest) = upload_parts(&gw.cluster, &bucket_record, key, upload_id).await?;
    let mut chosen = Vec::with_capacity(requested.len());
    for (i, want) in requested.iter().enumerate() {
        let part = newest
            .get(&want.number)
            .filter(|p| p.part.md5 == want.etag)
            .ok_or(S3Error::InvalidPart)?;
        if i + 1 < requested.len() && part.part.size < MIN_PART_SIZE {
            return Err(S3Error::EntityTooSmall);
        }
        if let Some((algorithm, _)) = checksum {
            check_part_checksum(algorithm, want, part)?;
        }
        chosen.push(part);
    }
    let object_checksum = checksum
        .map(|(algorithm, kind)| {
            let parts: Vec<(&str, u64)> = chosen
                .iter()
                .filter_map(|p| Some((p.part.checksum.as_ref()?.value.as_str(), p.part.size)))
                .collect();
            let value = multipart_checksum(algorithm, kind, &parts)
                .ok_or_else(|| S3Error::Internal("a stored part checksum is invalid".into()))?;
            Ok::<_, S3Error>(StoredChecksum {
                algorithm: algorithm.name().to_string(),
                value,
                composite: kind == ChecksumType::Composite,
            })
        })
        .transpose()?;
    if let Some((algorithm, value)) = &claimed {
        let matches = object_checksum.as_ref().is_some_and(|c| {
            c.algorithm == algorithm.name()
                && (c.value == *value || c.value.split('-').next() == Some(value.as_str()))
        });
        if !matches && checksum.is_some() {
            return Err(S3Error::BadDigest(algorithm.name()));
        }
    }
    let mut md5s = Md5::new();
    for part in &chosen {
        md5s.update(hex::decode(&part.part.md5).map_err(|e| S3Error::Internal(e.to_string()))?);
    }
    let etag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
    let size: u64 = chosen.iter().map(|p| p.part.size).sum();
    let version = Replica::version_of(replica);
    // Each holder's share of each chosen part version (its own fragment), where it has one.
    let shares: Vec<Vec<Option<&PartData>>> = per_holder
        .iter()
        .map(|records| {
            chosen
                .iter()
                .map(|want| {
                    records
                        .as_ref()?
                        .iter()
                        .find(|r| r.part.number == want.part.number && r.version == want.version)
                        .map(|r| &r.part)
                })
                .collect()
        })
        .collect();
    // A holder can only record the object if it has every chosen part version. A substitute
    // keeping a down holder's share gets the parts as that slot holds them: the same files (its
    // own, uploaded while the holder was down, or the holder's), and inline fragments rebuilt
    // from k other holders'.
    let holders = gw.cluster.write_holders(&bucket_record.id, key);
    let parts_of: Vec<Option<Vec<PartData>>> = holders
        .iter()
        .map(|h| match h.hint_for {
            None => shares[h.slot as usize].iter().map(|p| p.cloned()).collect(),
            Some(_) => chosen
                .iter()
                .enumerate()
                .map(|(j, want)| match want.part.inline {
                    None => Some(want.part.clone()),
                    Some(_) => {
                        let by_slot: Vec<Option<&PartData>> = shares.iter().map(|c| c[j]).collect();
                        part_for_slot(&gw.cluster.codec, &by_slot, h.slot)
                    }
                })
                .collect(),
        })
        .collect();
    let stored: Vec<bool> = parts_of.iter().map(Option::is_some).collect();
    let slot_parts = |slot: u8| {
        holders
            .iter()
            .position(|h| h.slot == slot)
            .and_then(|at| parts_of[at].clone())
            .unwrap_or_default()
    };
    let claimed = match &precondition {
        Some(p) => Some(claim(&gw.cluster, &bucket_record, key, &holders, &stored, p).await?),
        None => None,
    };
    let new = NewVersion {
        version,
        versioned: replica.map_or(bucket_record.versions_writes(), |r| r.versioned),
        size,
        etag,
        checksum: object_checksum,
        headers: upload.headers.clone(),
        tags: upload.tags.clone(),
        lock: lock_of(&bucket_record, upload.lock, version),
        codec: gw.cluster.codec.clone(),
        completed_upload: Some(upload_id.to_string()),
        encryption: upload.encryption.clone(),
        acl: upload.acl.clone(),
        replica,
    };
    let record_for = |slot: u8| new.record(slot, slot_parts(slot));
    commit_record(
        &gw.cluster,
        &bucket_record,
        key,
        &holders,
        &stored,
        record_for,
        Some(upload_id),
        claimed.as_ref(),
    )
    .await?;
    completed(bucket, key, new.written(&bucket_record))
}

/// A Complete of an upload that is gone: when it is the one the key's current version completed,
/// less than `REPEATED_COMPLETE_SECS` ago, and the same parts are listed, the answer is the
/// first Complete's (an SDK whose response was lost retries, and must not be told the upload
/// does not exist). The record answers it, so this holds through any gateway and any restart.
async fn repeated_complete(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    upload_id: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let current = match find_version(&gw.cluster, bucket, key, None, false).await {
        Ok(found) => found.record,
        Err(OpError::NoSuchKey | OpError::DeleteMarker { .. }) => {
            return Err(S3Error::NoSuchUpload)
        }
        Err(e) => return Err(e.into()),
    };
    let age_secs = unix_now().saturating_sub(current.version.unix_millis() as u64 / 1000);
    if current.completed_upload.as_deref() != Some(upload_id) || age_secs > REPEATED_COMPLETE_SECS {
        return Err(S3Error::NoSuchUpload);
    }
    let body_digests = Expected::new(req.header("content-md5"), None)?;
    let body = req.read_small_body_against(4 << 20, body_digests).await?;
    let requested = parse_complete_parts(&body)?;
    let same_parts = requested.len() == current.parts.len()
        && requested
            .iter()
            .zip(&current.parts)
            .all(|(want, part)| want.number == part.number && want.etag == part.md5);
    if !same_parts {
        return Err(S3Error::InvalidPart);
    }
    let written = Written {
        version_id: version_id(bucket, current.version_ref()),
        etag: current.etag,
        checksum: current.checksum,
        version: current.version,
        encryption: current.encryption,
    };
    completed(&bucket.name, key, written)
}

/// The answer to a Complete that wrote `written`.
fn completed(bucket: &str, key: &str, written: Written) -> Result<S3Response, S3Error> {
    let mut xml = XmlWriter::new("CompleteMultipartUploadResult");
    xml.elem("Location", format!("/{bucket}/{key}"))
        .elem("Bucket", bucket)
        .elem("Key", key)
        .elem("ETag", format!("\"{}\"", written.etag));
    if let Some(c) = &written.checksum {
        xml.elem(&format!("Checksum{}", c.algorithm), &c.value)
            .elem("ChecksumType", ChecksumType::of(c).name());
    }
    let mut response = xml_response(xml);
    encryption::insert_headers(response.headers_mut(), written.encryption.as_ref());
    if let Some(id) = written.version_id.and_then(|id| id.parse().ok()) {
        response.headers_mut().insert("x-amz-version-id", id);
    }
    Ok(response)
}

pub async fn abort(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    find_upload(&gw.cluster, &bucket, key, upload_id).await?;
    abort_upload(&gw.cluster, &bucket, key, upload_id).await?;
    Ok(empty_response(http::StatusCode::NO_CONTENT))
}

/// A part listed in a Complete of an upload with a checksum: it must have been uploaded with that
/// checksum, and the value listed (when given) must be that one.
fn check_part_checksum(
    algorithm: Algorithm,
    listed: &CompletePart,
    part: &PartRecord,
) -> Result<(), S3Error> {
    let stored = part
        .part
        .checksum
        .as_ref()
        .filter(|c| c.algorithm == algorithm.name())
        .ok_or_else(|| {
            S3Error::InvalidRequest(format!(
                "The upload was created using a {} checksum. The complete request must include the checksum for each part. It was missing for part {} in the request.",
                algorithm.name().to_ascii_lowercase(),
                listed.number
            ))
        })?;
    let mismatch = listed
        .checksums
        .iter()
        .any(|(name, value)| name.eq_ignore_ascii_case(algorithm.name()) && *value != stored.value);
    if mismatch {
        return Err(S3Error::InvalidPart);
    }
    Ok(())
}

/// Listings of parts and uploads return at most this many entries per page, as in S3.
pub const MAX_LISTED: usize = 1000;

/// A non-negative integer query parameter (`max-parts`, `part-number-marker`, ...).
fn query_number<T: std::str::FromStr>(query: &Query, name: &str, default: T) -> Result<T, S3Error> {
    number(name, query.get(name), default)
}

/// ListParts, paged by `max-parts` and `part-number-marker`.
pub async fn list_parts(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    upload_id: &str,
    req: &S3Request,
) -> Result<S3Response, S3Error> {
    let max_parts = query_number(&req.query, "max-parts", MAX_LISTED)?.min(MAX_LISTED);
    let marker: u32 = query_number(&req.query, "part-number-marker", 0)?;
    let bucket_record = gw.cluster.bucket(bucket).await?;
    let upload = find_upload(&gw.cluster, &bucket_record, key, upload_id).await?;
    // The parts' ETags and checksums are of the plaintext: an SSE-C upload's only with its key.
    encryption::for_read(gw, req, upload.encryption.as_ref(), SSE_C)?;
    let (_, newest) = upload_parts(&gw.cluster, &bucket_record, key, upload_id).await?;
    let mut after = newest.range(marker.saturating_add(1)..).map(|(_, p)| p);
    let page: Vec<&PartRecord> = after.by_ref().take(max_parts).collect();
    let truncated = after.next().is_some();
    let mut xml = XmlWriter::new("ListPartsResult");
    xml.elem("Bucket", bucket)
        .elem("Key", key)
        .elem("UploadId", upload_id)
        .elem("PartNumberMarker", marker.to_string());
    if let Some(last) = page.last() {
        xml.elem("NextPartNumberMarker", last.part.number.to_string());
    }
    xml.elem("MaxParts", max_parts.to_string())
        .elem("IsTruncated", truncated.to_string());
    owner_and_initiator(&mut xml, &bucket_record, &upload);
    xml.elem("StorageClass", "STANDARD");
    if let Some(algorithm) = &upload.checksum_algorithm {
        xml.elem("ChecksumAlgorithm", algorithm);
    }
    if let Some(kind) = &upload.checksum_type {
        xml.elem("ChecksumType", kind);
    }
    for part in page {
        xml.open("Part")
            .elem("PartNumber", part.part.number.to_string())
            .elem("LastModified", iso8601(part.version))
            .elem("ETag", format!("\"{}\"", part.part.md5))
            .elem("Size", part.part.size.to_string());
        if let Some(c) = &part.part.checksum {
            xml.elem(&format!("Checksum{}", c.algorithm), &c.value);
        }
        xml.close();
    }
    Ok(xml_response(xml))
}

/// The upload's initiator, who owns the object it completes.
fn owner_and_initiator(xml: &mut XmlWriter, bucket: &BucketRecord, upload: &UploadRecord) {
    let id = match &upload.acl {
        Some(acl) => &acl.owner,
        None => owner_id(bucket),
    };
    principal(xml, "Initiator", id);
    principal(xml, "Owner", id);
}

/// ListMultipartUploads: uploads ordered by key, then by when they were started; paged by
/// `max-uploads`, `key-marker` and `upload-id-marker`, rolled up at the delimiter.
pub async fn list_uploads(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let query = &req.query;
    let max_uploads = query_number(query, "max-uploads", MAX_LISTED)?.min(MAX_LISTED);
    let prefix = query.get("prefix").unwrap_or("");
    let delimiter = query.get("delimiter").filter(|d| !d.is_empty());
    let key_marker = query.get("key-marker").unwrap_or("");
    let upload_marker = query
        .get("upload-id-marker")
        .filter(|_| !key_marker.is_empty());
    let url_encode = url_encoding(query)?;
    let bucket_record = gw.cluster.bucket(bucket).await?;
    let mut uploads: BTreeMap<(String, Version, String), UploadRecord> = BTreeMap::new();
    for upload in all_uploads(&gw.cluster, &bucket_record).await? {
        if upload.key.starts_with(prefix) {
            let at = (upload.key.clone(), upload.version, upload.upload_id.clone());
            uploads.insert(at, upload);
        }
    }
    // Where the page starts: after every upload of the marker key, or after the marker upload.
    let marker_at = upload_marker.and_then(|id| {
        uploads
            .keys()
            .find(|(key, _, upload)| key == key_marker && upload == id)
            .cloned()
    });
    let mut entries: Vec<Listed> = Vec::new();
    let mut truncated = false;
    for (at, upload) in &uploads {
        let after_marker = match &marker_at {
            Some(marker) => at > marker,
            None => at.0.as_str() > key_marker,
        };
        if !after_marker {
            continue;
        }
        let rolled = delimiter.and_then(|d| {
            upload.key[prefix.len()..]
                .find(d)
                .map(|i| upload.key[..prefix.len() + i + d.len()].to_string())
        });
        if let Some(common) = rolled {
            let seen = matches!(entries.last(), Some(Listed::Prefix(p)) if *p == common);
            if seen || common.as_str() <= key_marker {
                continue;
            }
            if entries.len() == max_uploads {
                truncated = true;
                break;
            }
            entries.push(Listed::Prefix(common));
            continue;
        }
        if entries.len() == max_uploads {
            truncated = true;
            break;
        }
        entries.push(Listed::Upload(upload));
    }
    let enc = |s: &str| encode_name(s, url_encode);
    let mut xml = XmlWriter::new("ListMultipartUploadsResult");
    xml.elem("Bucket", bucket)
        .elem("KeyMarker", enc(key_marker))
        .elem("UploadIdMarker", upload_marker.unwrap_or(""))
        .elem("Prefix", enc(prefix));
    if let Some(d) = delimiter {
        xml.elem("Delimiter", enc(d));
    }
    if truncated {
        match entries.last() {
            Some(Listed::Upload(u)) => {
                xml.elem("NextKeyMarker", enc(&u.key))
                    .elem("NextUploadIdMarker", &u.upload_id);
            }
            Some(Listed::Prefix(p)) => {
                xml.elem("NextKeyMarker", enc(p));
            }
            None => {}
        }
    }
    xml.elem("MaxUploads", max_uploads.to_string())
        .elem("IsTruncated", truncated.to_string());
    if url_encode {
        xml.elem("EncodingType", "url");
    }
    for entry in &entries {
        match entry {
            Listed::Upload(upload) => {
                xml.open("Upload")
                    .elem("Key", enc(&upload.key))
                    .elem("UploadId", &upload.upload_id);
                owner_and_initiator(&mut xml, &bucket_record, upload);
                xml.elem("StorageClass", "STANDARD")
                    .elem("Initiated", iso8601(upload.version));
                if let Some(algorithm) = &upload.checksum_algorithm {
                    xml.elem("ChecksumAlgorithm", algorithm);
                }
                xml.close();
            }
            Listed::Prefix(prefix) => {
                xml.open("CommonPrefixes")
                    .elem("Prefix", enc(prefix))
                    .close();
            }
        }
    }
    Ok(xml_response(xml))
}

/// One entry of a ListMultipartUploads page.
enum Listed<'a> {
    Upload(&'a UploadRecord),
    Prefix(String),
}
