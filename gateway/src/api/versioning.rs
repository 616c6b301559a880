//! Bucket versioning: PutBucketVersioning, GetBucketVersioning and ListObjectVersions.
//!
//! The state is a field of the bucket record (see `BucketRecord::versioning`); what it changes for
//! writes and deletes lives with them (`objects::write_object`, `objects::remove`).

use crate::api::access::owner_id;
use crate::api::listing::{encode_name, iso8601, max_keys, owner, url_encoding};
use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::ops::list::{list_versions, VersionQuery};
use crate::s3::error::S3Error;
use crate::s3::response::{xml_response, S3Response};
use crate::s3::xml::{parse_tree, XmlWriter};
use http::Response;
use node_rpc::body::empty;
use node_rpc::record::Versioning;

const BODY_LIMIT: u64 = 64 * 1024;

/// A `<VersioningConfiguration>` body: the state to set (`None`: no `Status`, nothing changes).
pub fn parse(body: &[u8]) -> Result<Option<Versioning>, S3Error> {
    let root = parse_tree(body, "VersioningConfiguration")?;
    if root.text_of("MfaDelete").is_some_and(|m| m == "Enabled") {
        return Err(S3Error::NotImplemented("MFA delete"));
    }
    match root.text_of("Status") {
        None => Ok(None),
        Some("Enabled") => Ok(Some(Versioning::Enabled)),
        Some("Suspended") => Ok(Some(Versioning::Suspended)),
        Some(_) => Err(S3Error::MalformedXml),
    }
}

pub async fn put_versioning(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    req.require_integrity()?;
    let record = gw.cluster.bucket(bucket).await?;
    let state = parse(&req.read_small_body(BODY_LIMIT).await?)?;
    if record.object_lock.is_some() && state == Some(Versioning::Suspended) {
        return Err(S3Error::InvalidBucketState(
            "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.",
        ));
    }
    if let Some(state) = state {
        update_bucket(&gw.cluster, bucket, |b| b.versioning = Some(state)).await?;
    }
    Ok(Response::new(empty()))
}

pub async fn get_versioning(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let mut xml = XmlWriter::new("VersioningConfiguration");
    match bucket.versioning {
        Some(Versioning::Enabled) => {
            xml.elem("Status", "Enabled");
        }
        Some(Versioning::Suspended) => {
            xml.elem("Status", "Suspended");
        }
        None => {}
    }
    Ok(xml_response(xml))
}

/// ListObjectVersions (`GET /bucket?versions`), paged by `key-marker` and `version-id-marker`.
pub async fn list_object_versions(
    gw: &Gateway,
    bucket: &str,
    req: &S3Request,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let query = &req.query;
    let max_keys = max_keys(query)?;
    let url_encode = url_encoding(query)?;
    let prefix = query.get("prefix").unwrap_or("").to_string();
    let delimiter = query
        .get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let key_marker = query.get("key-marker").filter(|m| !m.is_empty());
    let version_marker = query.get("version-id-marker").filter(|m| !m.is_empty());
    if key_marker.is_none() && version_marker.is_some() {
        return Err(S3Error::InvalidArgument(
            "A version-id marker cannot be specified without a key marker.".into(),
        ));
    }
    let version_ref = version_marker
        .map(crate::s3::http::version_id)
        .transpose()?;
    let listing = list_versions(
        &gw.cluster,
        &bucket.id,
        &VersionQuery {
            prefix: prefix.clone(),
            delimiter: delimiter.clone(),
            key_marker: key_marker.map(str::to_string),
            version_marker: version_ref,
            max_keys,
            hide_markers: bucket.versioning.is_none(),
        },
    )
    .await?;
    let enc = |s: &str| encode_name(s, url_encode);
    let mut xml = XmlWriter::new("ListVersionsResult");
    xml.elem("Name", &bucket.name)
        .elem("Prefix", enc(&prefix))
        .elem("KeyMarker", enc(key_marker.unwrap_or("")))
        .elem("VersionIdMarker", version_marker.unwrap_or(""));
    if let Some(d) = &delimiter {
        xml.elem("Delimiter", enc(d));
    }
    xml.elem("MaxKeys", max_keys.to_string());
    if url_encode {
        xml.elem("EncodingType", "url");
    }
    xml.elem("IsTruncated", listing.next.is_some().to_string());
    if let Some((key, version)) = &listing.next {
        xml.elem("NextKeyMarker", enc(key));
        if let Some(version) = version {
            xml.elem("NextVersionIdMarker", version.to_string());
        }
    }
    for (entry, latest) in &listing.versions {
        xml.open(if entry.deleted {
            "DeleteMarker"
        } else {
            "Version"
        })
        .elem("Key", enc(&entry.key))
        .elem("VersionId", entry.version_ref().to_string())
        .elem("IsLatest", latest.to_string())
        .elem("LastModified", iso8601(entry.last_modified()));
        if !entry.deleted {
            xml.elem("ETag", format!("\"{}\"", entry.etag))
                .elem("Size", entry.size.to_string())
                .elem("StorageClass", "STANDARD");
        }
        owner(
            &mut xml,
            entry.owner.as_deref().unwrap_or(owner_id(&bucket)),
        );
        xml.close();
    }
    for prefix in &listing.prefixes {
        xml.open("CommonPrefixes")
            .elem("Prefix", enc(prefix))
            .close();
    }
    Ok(xml_response(xml))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioning_bodies() {
        let body = |status: &str| {
            format!("<VersioningConfiguration><Status>{status}</Status></VersioningConfiguration>")
        };
        assert_eq!(
            parse(body("Enabled").as_bytes()).unwrap(),
            Some(Versioning::Enabled)
        );
        assert_eq!(
            parse(body("Suspended").as_bytes()).unwrap(),
            Some(Versioning::Suspended)
        );
        assert!(matches!(
            parse(body("On").as_bytes()),
            Err(S3Error::MalformedXml)
        ));
        assert_eq!(parse(b"<VersioningConfiguration/>").unwrap(), None);
        assert!(matches!(
            parse(b"<VersioningConfiguration><MfaDelete>Enabled</MfaDelete></VersioningConfiguration>"),
            Err(S3Error::NotImplemented(_))
        ));
    }
}
