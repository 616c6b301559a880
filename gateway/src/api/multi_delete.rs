//! DeleteObjects (`POST /bucket?delete`): up to 1000 keys (or versions), each deleted as
//! DeleteObject would, with a `Deleted` or `Error` entry per key (only errors in Quiet mode).

use crate::api::unsupported::Operation;
use crate::api::{Gateway, S3Request};
use crate::ops::delete::{remove, Removed};
use crate::s3::error::S3Error;
use crate::s3::response::{xml_response, S3Response};
use crate::s3::xml::{parse_tree, XmlWriter};
use futures::future::join_all;
use node_rpc::record::BucketRecord;

const MAX_KEYS: usize = 1000;
/// Keys deleted at once; each is one quorum commit.
const CONCURRENCY: usize = 16;
/// 1000 keys of 1024 bytes, escaped, with their elements.
const BODY_LIMIT: u64 = 8 << 20;

/// One `<Object>` of the request: its key and the version asked for, if any.
pub struct ToDelete {
    key: String,
    version_id: Option<String>,
}

pub fn parse(body: &[u8]) -> Result<(bool, Vec<ToDelete>), S3Error> {
    let root = parse_tree(body, "Delete")?;
    let quiet = match root.text_of("Quiet") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(S3Error::MalformedXml),
    };
    let targets = root
        .all("Object")
        .map(|o| {
            let key = o.child("Key").ok_or(S3Error::MalformedXml)?.text.clone();
            Ok(ToDelete {
                key,
                version_id: o.text_of("VersionId").map(str::to_string),
            })
        })
        .collect::<Result<Vec<_>, S3Error>>()?;
    if targets.is_empty() || targets.len() > MAX_KEYS {
        return Err(S3Error::MalformedXml);
    }
    Ok((quiet, targets))
}

pub async fn delete_objects(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    req.require_integrity()?;
    let bucket = gw.cluster.bucket(bucket).await?;
    let bypass = crate::api::object_lock::bypass_governance(&req, &bucket);
    let caller = req.caller.clone();
    let (quiet, targets) = parse(&req.read_small_body(BODY_LIMIT).await?)?;
    let mut outcomes = Vec::with_capacity(targets.len());
    for batch in targets.chunks(CONCURRENCY) {
        let deletes = batch.iter().map(|t| async {
            // Each key as a DeleteObject: a policy may allow or deny some keys and not others.
            caller.check(&bucket, Operation::DeleteObject, Some(&t.key))?;
            delete_one(gw, &bucket, t, bypass).await
        });
        outcomes.extend(join_all(deletes).await);
    }
    let mut xml = XmlWriter::new("DeleteResult");
    for (target, outcome) in targets.iter().zip(outcomes) {
        match outcome {
            Ok(_) if quiet => {}
            Ok(removed) => {
                xml.open("Deleted").elem("Key", &target.key);
                if let Some(v) = &target.version_id {
                    xml.elem("VersionId", v);
                }
                if removed.delete_marker {
                    xml.elem("DeleteMarker", "true");
                    if let Some(id) = &removed.version_id {
                        xml.elem("DeleteMarkerVersionId", id);
                    }
                }
                xml.close();
            }
            Err(e) => {
                xml.open("Error").elem("Key", &target.key);
                if let Some(v) = &target.version_id {
                    xml.elem("VersionId", v);
                }
                xml.elem("Code", e.code())
                    .elem("Message", e.to_string())
                    .close();
            }
        }
    }
    Ok(xml_response(xml))
}

async fn delete_one(
    gw: &Gateway,
    bucket: &BucketRecord,
    target: &ToDelete,
    bypass: bool,
) -> Result<Removed, S3Error> {
    if target.key.is_empty() {
        return Err(S3Error::InvalidArgument("The key is empty".into()));
    }
    if target.key.len() > 1024 {
        return Err(S3Error::KeyTooLongError);
    }
    let which = target
        .version_id
        .as_deref()
        .map(crate::s3::http::version_id)
        .transpose()?;
    Ok(remove(&gw.cluster, bucket, &target.key, which, bypass).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_bodies() {
        let (quiet, targets) = parse(
            b"<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object>\
              <Object><Key>b</Key><VersionId>null</VersionId></Object></Delete>",
        )
        .unwrap();
        assert!(quiet);
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1].version_id.as_deref(), Some("null"));
        assert!(parse(b"<Delete></Delete>").is_err());
        assert!(parse(b"<Delete><Object><VersionId>x</VersionId></Object></Delete>").is_err());
        let many = format!(
            "<Delete>{}</Delete>",
            "<Object><Key>k</Key></Object>".repeat(1001)
        );
        assert!(matches!(parse(many.as_bytes()), Err(S3Error::MalformedXml)));
    }
}
