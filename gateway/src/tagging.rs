//! Object tagging (`?tagging` on a key, `x-amz-tagging` on PUT) and bucket tagging.
//!
//! An object's tags live in its record. Changing them commits the version again, with the new tags
//! and its next revision, to every holder that has it (each keeps its own fragment): the version,
//! hence its version id and Last-Modified, stays, as in S3. A PUT committed meanwhile is a newer
//! version and stays current whatever the order of the two.

use crate::buckets::update_bucket;
use crate::error::S3Error;
use crate::objects::{commit_record, find_version, version_param};
use crate::repair::record_for_slot;
use crate::router::{xml_response, Gateway, S3Request, S3Response};
use crate::sigv4::parse_query;
use crate::xml::{parse_tree, XmlWriter};
use futures::future::join_all;
use http::{Response, StatusCode};
use storage_node::body::empty;
use storage_node::protocol::Lookup;
use storage_node::record::{ObjectRecord, Version, VersionRef};

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
    let tags: Tags = parse_query(&header.replace('+', "%20"));
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
fn parse(body: &[u8], max: usize) -> Result<Tags, S3Error> {
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

fn no_content() -> S3Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(empty())
        .expect("response parts are valid")
}

pub async fn get_object_tagging(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let which = version_param(&req.query)?;
    let found = find_version(gw, &bucket, key, which, false).await?;
    Ok(tagging_xml(&found.record.tags))
}

pub async fn put_object_tagging(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let which = version_param(&req.query)?;
    let tags = parse(
        &req.read_small_body(TAGGING_BODY_LIMIT).await?,
        MAX_OBJECT_TAGS,
    )?;
    set_object_tags(gw, bucket, key, which, tags).await?;
    Ok(Response::new(empty()))
}

pub async fn delete_object_tagging(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let which = version_param(&req.query)?;
    set_object_tags(gw, bucket, key, which, Vec::new()).await?;
    Ok(no_content())
}

/// Commits the version (`which`; `None`: the current one) again, with `tags` and its next
/// revision, to the holders that have it.
async fn set_object_tags(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    which: Option<VersionRef>,
    tags: Tags,
) -> Result<(), S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let holders = gw.cluster.holders(&bucket.id, key);
    let answers: Vec<Option<Lookup>> = join_all(holders.iter().map(|h| {
        gw.cluster
            .client
            .object(&h.node.addr, &bucket.id, key, which)
    }))
    .await
    .into_iter()
    .map(Result::ok)
    .collect();
    let purged: Vec<Version> = answers
        .iter()
        .flatten()
        .flat_map(|l| l.purged.clone())
        .collect();
    let answers: Vec<Option<Option<ObjectRecord>>> = answers
        .into_iter()
        .map(|a| a.map(|l| l.record.filter(|r| !purged.contains(&r.version))))
        .collect();
    let answered = answers.iter().filter(|a| a.is_some()).count();
    if answered < gw.cluster.read_quorum() {
        return Err(S3Error::ServiceUnavailable(format!(
            "{answered} holders answered for the object"
        )));
    }
    let newest = answers.iter().flatten().flatten().map(|r| r.stamp()).max();
    let current: Vec<Option<ObjectRecord>> = answers
        .into_iter()
        .map(|a| {
            a.flatten()
                .filter(|r| Some(r.version) == newest.map(|n| n.0))
        })
        .collect();
    match current.iter().flatten().next() {
        None if which.is_some() => return Err(S3Error::NoSuchVersion),
        None => return Err(S3Error::NoSuchKey),
        Some(r) if r.deleted => return Err(S3Error::MethodNotAllowed),
        Some(_) => {}
    }
    // A substitute keeping a down holder's slot gets that slot's record, rebuilt from the others.
    let targets = gw.cluster.write_holders(&bucket.id, key);
    let records: Vec<Option<ObjectRecord>> = targets
        .iter()
        .map(|t| match t.hint_for {
            None => current[t.fragment as usize].clone(),
            Some(_) => record_for_slot(&current, t.fragment),
        })
        .collect();
    let has: Vec<bool> = records.iter().map(Option::is_some).collect();
    let revision = newest.map_or(0, |n| n.1) + 1;
    let record_for = |fragment: u8| {
        let record = targets
            .iter()
            .zip(&records)
            .find_map(|(t, r)| (t.fragment == fragment).then(|| r.clone()))
            .flatten()
            .expect("commits go only to holders with the version");
        ObjectRecord {
            revision,
            tags: tags.clone(),
            ..record
        }
    };
    commit_record(gw, &bucket, key, &targets, &has, record_for, None, None).await
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
    crate::buckets::require_integrity(&req)?;
    let tags = parse(
        &req.read_small_body(TAGGING_BODY_LIMIT).await?,
        MAX_BUCKET_TAGS,
    )?;
    update_bucket(gw, bucket, |b| b.tags = Some(tags)).await?;
    Ok(no_content())
}

pub async fn delete_bucket_tagging(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    update_bucket(gw, bucket, |b| b.tags = None).await?;
    Ok(no_content())
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
