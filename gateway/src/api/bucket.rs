//! Bucket operations and object listings.

use crate::api::listing::{decode_token, iso8601, owner};
use crate::api::{Gateway, S3Request};
use crate::ops::cluster::Cluster;
use crate::s3::acl::ADMIN_ID;
use crate::s3::error::S3Error;
use crate::s3::response::{empty_response, xml_response, Finish, S3Response};
use crate::s3::xml::XmlWriter;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{Response, StatusCode};
use node_rpc::body::empty;
use node_rpc::object_lock::BucketLock;
use node_rpc::record::{BucketRecord, Version, Versioning};

/// The most buckets one ListBuckets page holds (AWS's limit for `max-buckets`).
const MAX_BUCKETS: usize = 10_000;

/// ListBuckets, filtered by `prefix` and paged by `max-buckets` and `continuation-token` (the
/// last name of the page before, opaque to clients as in S3).
pub async fn list_buckets(gw: &Gateway, req: &S3Request) -> Result<S3Response, S3Error> {
    let query = &req.query;
    let prefix = query.get("prefix").unwrap_or("");
    let after = query
        .get("continuation-token")
        .map(decode_token)
        .transpose()?;
    let max = match query.get("max-buckets") {
        None => MAX_BUCKETS,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=MAX_BUCKETS).contains(n))
            .ok_or_else(|| {
                S3Error::InvalidArgument(
                    "Argument max-buckets must be an integer between 1 and 10000".into(),
                )
            })?,
    };
    let mut buckets = gw.cluster.live_buckets().await?;
    buckets.retain(|b| req.caller.principal.sees(b));
    let (page, next) = bucket_page(&buckets, prefix, after.as_deref(), max);
    let mut xml = XmlWriter::new("ListAllMyBucketsResult");
    owner(
        &mut xml,
        req.caller.principal.canonical_id().unwrap_or(ADMIN_ID),
    );
    xml.open("Buckets");
    for bucket in page {
        xml.open("Bucket")
            .elem("Name", &bucket.name)
            .elem("CreationDate", iso8601(bucket.created()))
            .close();
    }
    xml.close();
    if let Some(last) = next {
        xml.elem("ContinuationToken", URL_SAFE_NO_PAD.encode(last));
    }
    if query.has("prefix") {
        xml.elem("Prefix", prefix);
    }
    Ok(xml_response(xml))
}

/// The buckets (sorted by name) of one ListBuckets page: those named with `prefix` after
/// `after`, at most `max`; and the name to continue after when more follow.
fn bucket_page<'a>(
    buckets: &'a [BucketRecord],
    prefix: &str,
    after: Option<&str>,
    max: usize,
) -> (Vec<&'a BucketRecord>, Option<&'a str>) {
    let mut matching = buckets
        .iter()
        .filter(|b| b.name.starts_with(prefix))
        .filter(|b| after.is_none_or(|a| b.name.as_str() > a));
    let page: Vec<&BucketRecord> = matching.by_ref().take(max).collect();
    let next = match matching.next() {
        Some(_) => page.last().map(|b| b.name.as_str()),
        None => None,
    };
    (page, next)
}

pub async fn create_bucket(
    gw: &Gateway,
    name: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    if !valid_bucket_name(name) {
        return Err(S3Error::InvalidBucketName);
    }
    let object_lock = match req
        .header("x-amz-bucket-object-lock-enabled")
        .map(str::trim)
    {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(S3Error::InvalidArgument(
                "x-amz-bucket-object-lock-enabled must be true or false".into(),
            ))
        }
    };
    // A CreateBucketConfiguration may name a location; this store has one region, so it is read
    // (to check its signature) and otherwise ignored.
    let owner = req.caller.principal.owner_id();
    let (acl, ownership) = crate::api::acl::for_new_bucket(
        gw,
        &req,
        owner.as_deref().unwrap_or(crate::s3::acl::ADMIN_ID),
    )
    .await?;
    req.read_small_body(64 * 1024).await?;
    if let Some(existing) = gw.cluster.buckets(true).await?.get(name) {
        if !existing.deleted && existing.owner == owner {
            return Err(S3Error::BucketAlreadyOwnedByYou);
        }
        if !existing.deleted {
            return Err(S3Error::BucketAlreadyExists);
        }
    }
    let mut record = Cluster::new_bucket_record(name);
    record.owner = owner;
    record.acl = acl;
    record.ownership = ownership;
    if object_lock {
        // Object Lock needs versioning, and a bucket created with it has both for good.
        record.versioning = Some(Versioning::Enabled);
        record.object_lock = Some(BucketLock::default());
    }
    gw.cluster.put_bucket(record).await?;
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
    if !crate::ops::bucket::is_empty(&gw.cluster, &bucket).await? {
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

pub async fn location(gw: &Gateway, name: &str) -> Result<S3Response, S3Error> {
    gw.cluster.bucket(name).await?;
    // S3 answers an empty constraint for us-east-1.
    let region = if gw.config.region == "us-east-1" {
        ""
    } else {
        &gw.config.region
    };
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/xml")
        .finish(node_rpc::body::full(format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{}</LocationConstraint>"#,
            crate::s3::xml::escape(region)
        )))
}

/// GetBucketNotificationConfiguration: Tessera sends no event notifications, so every bucket's
/// configuration is empty (PutBucketNotificationConfiguration is refused).
pub async fn notification(gw: &Gateway, name: &str) -> Result<S3Response, S3Error> {
    gw.cluster.bucket(name).await?;
    Ok(xml_response(XmlWriter::new("NotificationConfiguration")))
}

/// S3's rules: 3-63 characters of lowercase letters, digits, dots and hyphens, starting and ending
/// with a letter or digit, not shaped like an IP address, and without the prefixes and suffixes
/// AWS reserves (punycode's `xn--`, access points' and aliases' own).
pub fn valid_bucket_name(name: &str) -> bool {
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 4] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3"];
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        || RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s))
    {
        return false;
    }
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
            "xn--bcher-kva",
            "sthree-abc",
            "abc-s3alias",
            "abc--ol-s3",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn bucket_pages_continue_after_the_last_name() {
        let buckets: Vec<BucketRecord> = ["a1", "a2", "a3", "b1"]
            .into_iter()
            .map(Cluster::new_bucket_record)
            .collect();
        let names = |page: Vec<&BucketRecord>| -> Vec<String> {
            page.into_iter().map(|b| b.name.clone()).collect()
        };
        let (page, next) = bucket_page(&buckets, "a", None, 2);
        assert_eq!(names(page), ["a1", "a2"]);
        assert_eq!(next, Some("a2"));
        let (page, next) = bucket_page(&buckets, "a", Some("a2"), 2);
        assert_eq!(names(page), ["a3"]);
        assert_eq!(next, None);
        let (page, next) = bucket_page(&buckets, "", None, 4);
        assert_eq!(names(page).len(), 4);
        assert_eq!(next, None);
    }
}
