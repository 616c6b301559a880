//! Bucket operations and object listings.

use crate::api::{Gateway, S3Request};
use crate::ops::cluster::Cluster;
use crate::ops::list::{list, list_versions, ListQuery, VersionQuery};
use crate::s3::error::S3Error;
use crate::s3::http::Query;
use crate::s3::response::{empty_response, xml_response, Finish, S3Response};
use crate::s3::xml::XmlWriter;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::DateTime;
use http::{Response, StatusCode};
use node_rpc::body::empty;
use node_rpc::record::{BucketRecord, Version};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

const MAX_KEYS: usize = 1000;

/// `encoding-type=url` encodes all but unreserved characters and `/`, which every client decodes.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Owner shown in listings: a single-tenant store has one.
const OWNER_ID: &str = "tessera";

pub async fn list_buckets(gw: &Gateway) -> Result<S3Response, S3Error> {
    let buckets = gw.cluster.live_buckets().await?;
    let mut xml = XmlWriter::new("ListAllMyBucketsResult");
    owner(&mut xml);
    xml.open("Buckets");
    for bucket in &buckets {
        xml.open("Bucket")
            .elem("Name", &bucket.name)
            .elem("CreationDate", iso8601(bucket.created()))
            .close();
    }
    xml.close();
    Ok(xml_response(xml))
}

pub async fn create_bucket(
    gw: &Gateway,
    name: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    if !valid_bucket_name(name) {
        return Err(S3Error::InvalidBucketName);
    }
    // A CreateBucketConfiguration may name a location; this store has one region, so it is read
    // (to check its signature) and otherwise ignored.
    req.read_small_body(64 * 1024).await?;
    if let Some(existing) = gw.cluster.buckets(true).await?.get(name) {
        if !existing.deleted {
            return Err(S3Error::BucketAlreadyOwnedByYou);
        }
    }
    gw.cluster
        .put_bucket(Cluster::new_bucket_record(name))
        .await?;
    Response::builder()
        .header(http::header::LOCATION, format!("/{name}"))
        .finish(empty())
}

pub async fn head_bucket(gw: &Gateway, name: &str) -> Result<S3Response, S3Error> {
    gw.cluster.bucket(name).await?;
    let mut response = empty_response(StatusCode::OK);
    if let Ok(region) = gw.config.region.parse() {
        response.headers_mut().insert("x-amz-bucket-region", region);
    }
    Ok(response)
}

pub async fn delete_bucket(gw: &Gateway, name: &str) -> Result<S3Response, S3Error> {
    let bucket = crate::ops::bucket::live_bucket(&gw.cluster, name).await?;
    // With versioning, every version and delete marker must be gone first, as in S3.
    let is_empty = if bucket.versioning.is_some() {
        let query = VersionQuery {
            prefix: String::new(),
            delimiter: None,
            key_marker: None,
            version_marker: None,
            max_keys: 1,
            hide_markers: false,
        };
        list_versions(&gw.cluster, &bucket.id, &query)
            .await?
            .versions
            .is_empty()
    } else {
        let query = ListQuery {
            prefix: String::new(),
            delimiter: None,
            after: None,
            max_keys: 1,
        };
        list(&gw.cluster, &bucket.id, &query).await?.keys.is_empty()
    };
    if !is_empty {
        return Err(S3Error::BucketNotEmpty);
    }
    gw.cluster
        .put_bucket(BucketRecord {
            version: Version::now(),
            deleted: true,
            ..bucket
        })
        .await?;
    Ok(empty_response(http::StatusCode::NO_CONTENT))
}

/// Operations for which S3 requires an integrity check on the body: Content-MD5 or a checksum.
pub fn require_integrity(req: &S3Request) -> Result<(), S3Error> {
    let has_checksum = req.header("content-md5").is_some()
        || req.header("x-amz-trailer").is_some()
        || crate::s3::checksum::Algorithm::ALL
            .into_iter()
            .any(|a| req.header(&a.header()).is_some());
    if has_checksum {
        Ok(())
    } else {
        Err(S3Error::InvalidRequest(
            "Missing required header for this request: Content-MD5".into(),
        ))
    }
}

pub async fn location(gw: &Gateway, name: &str) -> Result<S3Response, S3Error> {
    gw.cluster.bucket(name).await?;
    // S3 answers an empty constraint for us-east-1.
    let region = if gw.config.region == "us-east-1" {
        ""
    } else {
        &gw.config.region
    };
    Ok(Response::builder()
        .header(http::header::CONTENT_TYPE, "application/xml")
        .body(node_rpc::body::full(format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{}</LocationConstraint>"#,
            crate::s3::xml::escape(region)
        )))
        .expect("response parts are valid"))
}

/// ListObjects (V1, with `marker`) and ListObjectsV2 (`list-type=2`).
pub async fn list_objects(gw: &Gateway, name: &str, query: &Query) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(name).await?;
    let v2 = query.get("list-type") == Some("2");
    let max_keys = max_keys(query)?;
    let url_encode = url_encoding(query)?;
    let prefix = query.get("prefix").unwrap_or("").to_string();
    let delimiter = query
        .get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let token = query.get("continuation-token");
    let after = if v2 {
        match token {
            Some(t) => Some(decode_token(t)?),
            None => query.get("start-after").map(str::to_string),
        }
    } else {
        query.get("marker").map(str::to_string)
    }
    .filter(|a| !a.is_empty());
    let listing = list(
        &gw.cluster,
        &bucket.id,
        &ListQuery {
            prefix: prefix.clone(),
            delimiter: delimiter.clone(),
            after,
            max_keys,
        },
    )
    .await?;
    let enc = |s: &str| encode_name(s, url_encode);
    let mut xml = XmlWriter::new("ListBucketResult");
    xml.elem("Name", &bucket.name).elem("Prefix", enc(&prefix));
    if let Some(d) = &delimiter {
        xml.elem("Delimiter", enc(d));
    }
    xml.elem("MaxKeys", max_keys.to_string());
    if url_encode {
        xml.elem("EncodingType", "url");
    }
    xml.elem("IsTruncated", listing.next_after.is_some().to_string());
    if v2 {
        xml.elem(
            "KeyCount",
            (listing.keys.len() + listing.prefixes.len()).to_string(),
        );
        if let Some(t) = token {
            xml.elem("ContinuationToken", t);
        }
        if let Some(s) = query.get("start-after") {
            xml.elem("StartAfter", enc(s));
        }
        if let Some(next) = &listing.next_after {
            xml.elem("NextContinuationToken", URL_SAFE_NO_PAD.encode(next));
        }
    } else {
        xml.elem("Marker", enc(query.get("marker").unwrap_or("")));
        if let (Some(next), Some(_)) = (&listing.next_after, &delimiter) {
            xml.elem("NextMarker", enc(next));
        }
    }
    let fetch_owner = !v2 || query.get("fetch-owner") == Some("true");
    for entry in &listing.keys {
        xml.open("Contents")
            .elem("Key", enc(&entry.key))
            .elem("LastModified", iso8601(entry.last_modified()))
            .elem("ETag", format!("\"{}\"", entry.etag))
            .elem("Size", entry.size.to_string());
        if fetch_owner {
            owner(&mut xml);
        }
        xml.elem("StorageClass", "STANDARD").close();
    }
    for prefix in &listing.prefixes {
        xml.open("CommonPrefixes")
            .elem("Prefix", enc(prefix))
            .close();
    }
    Ok(xml_response(xml))
}

/// `max-keys`, at most 1000 (the default).
pub fn max_keys(query: &Query) -> Result<usize, S3Error> {
    match query.get("max-keys") {
        Some(v) => Ok(v
            .parse::<usize>()
            .map_err(|_| {
                S3Error::InvalidArgument("max-keys must be a non-negative integer".into())
            })?
            .min(MAX_KEYS)),
        None => Ok(MAX_KEYS),
    }
}

/// Whether a listing names keys URL-encoded (`encoding-type=url`).
pub fn url_encoding(query: &Query) -> Result<bool, S3Error> {
    match query.get("encoding-type") {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(_) => Err(S3Error::InvalidArgument(
            "Invalid Encoding Method specified in Request".into(),
        )),
    }
}

pub fn encode_name(name: &str, url_encode: bool) -> String {
    if url_encode {
        utf8_percent_encode(name, URL_ENCODE).to_string()
    } else {
        name.to_string()
    }
}

/// The `<Owner>` element of listings.
pub fn owner(xml: &mut XmlWriter) {
    principal(xml, "Owner");
}

/// An `<Owner>` or `<Initiator>`: a single-tenant store has one principal.
pub fn principal(xml: &mut XmlWriter, element: &'static str) {
    xml.open(element)
        .elem("ID", OWNER_ID)
        .elem("DisplayName", OWNER_ID)
        .close();
}

fn decode_token(token: &str) -> Result<String, S3Error> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            S3Error::InvalidArgument("The continuation token provided is incorrect".into())
        })
}

pub fn iso8601(version: Version) -> String {
    DateTime::from_timestamp_millis(version.unix_millis())
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// S3's rules: 3-63 characters of lowercase letters, digits, dots and hyphens, starting and ending
/// with a letter or digit, and not shaped like an IP address.
pub fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for good in ["abc", "my-bucket.1", "a1b", &"a".repeat(63)] {
            assert!(valid_bucket_name(good), "{good}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip() {
        let key = "a/b c+é";
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode(key)).unwrap(), key);
        assert!(decode_token("!!!").is_err());
    }
}
