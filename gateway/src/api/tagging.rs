//! Object tagging (`?tagging` on a key, `x-amz-tagging` on PUT) and bucket tagging.
//!
//! An object's tags live in its record. Changing them commits the version again, with the new tags
//! and its next revision, to every holder that has it (each keeps its own fragment): the version,
//! hence its version id and Last-Modified, stays, as in S3. A PUT committed meanwhile is a newer
//! version and stays current whatever the order of the two.

use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::ops::lookup::find_version;
use crate::ops::revision::revise_version;
use crate::s3::error::S3Error;
use crate::s3::http::Query;
use crate::s3::response::{empty_response, xml_response, S3Response};
use crate::s3::xml::{parse_tree, XmlWriter};
use http::{Response, StatusCode};
use node_rpc::body::empty;

pub type Tags = Vec<(String, String)>;

const MAX_OBJECT_TAGS: usize = 10;

const MAX_BUCKET_TAGS: usize = 50;

const MAX_KEY_CHARS: usize = 128;

const MAX_VALUE_CHARS: usize = 256;

const TAGGING_BODY_LIMIT: u64 = 64 * 1024;

/// The tags of an `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded), checked as S3 does.
pub fn from_header(header: Option<&str>) -> Result<Tags, S3Error> {
    let Some(header) = header else {
        return Ok(Vec::new());
    };
    let tags: Tags = Query::parse(&header.replace('+', "%20")).0;
    let mut keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(S3Error::InvalidArgument(
            "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.".into(),
        ));
    }
    validate(&tags, MAX_OBJECT_TAGS)?;
    Ok(tags)
}

fn validate(tags: &Tags, max: usize) -> Result<(), S3Error> {
    if tags.len() > max {
        return Err(S3Error::InvalidTag(if max == MAX_OBJECT_TAGS {
            "Object tags cannot be greater than 10"
        } else {
            "Bucket tag count cannot be greater than 50"
        }));
    }
    for (i, (key, value)) in tags.iter().enumerate() {
        if key.is_empty() {
            return Err(S3Error::InvalidTag(
                "The TagKey you have provided is invalid",
            ));
        }
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(S3Error::InvalidTag(
                "The TagKey you have provided is too long, max 128",
            ));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(S3Error::InvalidTag(
                "The TagValue you have provided is too long, max 256",
            ));
        }
        if key.starts_with("aws:") {
            return Err(S3Error::InvalidTag(
                "Your TagKey cannot be prefixed with aws:",
            ));
        }
        if tags[..i].iter().any(|(k, _)| k == key) {
            return Err(S3Error::InvalidTag(
                "Cannot provide multiple Tags with the same key",
            ));
        }
    }
    Ok(())
}

/// A `<Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>` body.
pub fn parse(body: &[u8], max: usize) -> Result<Tags, S3Error> {
    let root = parse_tree(body, "Tagging")?;
    let set = root.child("TagSet").ok_or(S3Error::MalformedXml)?;
    let tags = set
        .all("Tag")
        .map(|tag| {
            let key = tag.child("Key").ok_or(S3Error::MalformedXml)?;
            let value = tag.child("Value").ok_or(S3Error::MalformedXml)?;
            Ok((key.text.clone(), value.text.clone()))
        })
        .collect::<Result<Tags, S3Error>>()?;
    validate(&tags, max)?;
    Ok(tags)
}

fn tagging_xml(tags: &[(String, String)]) -> S3Response {
    let mut xml = XmlWriter::new("Tagging");
    xml.open("TagSet");
    for (key, value) in tags {
        xml.open("Tag")
            .elem("Key", key)
            .elem("Value", value)
            .close();
    }
    xml.close();
    xml_response(xml)
}

pub async fn get_object_tagging(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let which = req.version_param()?;
    let found = find_version(&gw.cluster, &bucket, key, which, false).await?;
    Ok(tagging_xml(&found.record.tags))
}

pub async fn put_object_tagging(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let which = req.version_param()?;
    let tags = parse(
        &req.read_small_body(TAGGING_BODY_LIMIT).await?,
        MAX_OBJECT_TAGS,
    )?;
    let bucket = gw.cluster.bucket(bucket).await?;
    revise_version(&gw.cluster, &bucket, key, which, |r| {
        r.tags = tags;
        Ok(())
    })
    .await?;
    Ok(Response::new(empty()))
}

pub async fn delete_object_tagging(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let which = req.version_param()?;
    let bucket = gw.cluster.bucket(bucket).await?;
    revise_version(&gw.cluster, &bucket, key, which, |r| {
        r.tags.clear();
        Ok(())
    })
    .await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn get_bucket_tagging(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let tags = bucket.tags.ok_or(S3Error::NoSuchTagSet)?;
    Ok(tagging_xml(&tags))
}

pub async fn put_bucket_tagging(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    req.require_integrity()?;
    let tags = parse(
        &req.read_small_body(TAGGING_BODY_LIMIT).await?,
        MAX_BUCKET_TAGS,
    )?;
    update_bucket(&gw.cluster, bucket, |b| b.tags = Some(tags)).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn delete_bucket_tagging(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    update_bucket(&gw.cluster, bucket, |b| b.tags = None).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tags() {
        assert_eq!(
            from_header(Some("a=1&b%20c=d+e&empty=")).unwrap(),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b c".into(), "d e".into()),
                ("empty".into(), String::new())
            ]
        );
        assert!(from_header(Some("a=1&a=2")).is_err());
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert!(matches!(
            from_header(Some(&eleven.join("&"))),
            Err(S3Error::InvalidTag(_))
        ));
        assert!(from_header(Some(&format!("{}=v", "k".repeat(129)))).is_err());
        assert!(from_header(None).unwrap().is_empty());
    }

    #[test]
    fn tagging_bodies() {
        let body = br#"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag>
            <Tag><Key>b</Key><Value></Value></Tag></TagSet></Tagging>"#;
        assert_eq!(
            parse(body, 10).unwrap(),
            vec![("a".to_string(), "1".to_string()), ("b".into(), "".into())]
        );
        assert!(parse(b"<Tagging></Tagging>", 10).is_err());
        assert!(parse(
            b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>",
            10
        )
        .is_err());
    }
}
