//! Bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration. The rules served: Expiration
//! (Days or Date) of current versions under a prefix, and AbortIncompleteMultipartUpload, applied
//! by `background::lifecycle`. Actions other than these (transitions, noncurrent-version rules, tag
//! and size filters) are refused as NotImplemented rather than accepted and ignored.

use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::s3::error::S3Error;
use crate::s3::response::{empty_response, xml_response, S3Response};
use crate::s3::xml::{parse_tree, Element, XmlWriter};
use chrono::{DateTime, Timelike};
use http::{Response, StatusCode};
use node_rpc::body::empty;
use node_rpc::record::LifecycleRule;

const BODY_LIMIT: u64 = 1 << 20;

const MAX_RULES: usize = 1000;

const MAX_ID_LEN: usize = 255;

fn invalid(message: &str) -> S3Error {
    S3Error::InvalidArgument(message.to_string())
}

/// A positive whole number of days.
fn days(element: &Element, name: &str, what: &str) -> Result<u32, S3Error> {
    element
        .text_of(name)
        .and_then(|d| d.parse().ok())
        .filter(|d| *d > 0)
        .ok_or_else(|| {
            invalid(&format!(
                "'{name}' for {what} action must be a positive integer"
            ))
        })
}

fn parse_rule(rule: &Element) -> Result<LifecycleRule, S3Error> {
    const UNSUPPORTED: [&str; 5] = [
        "Transition",
        "NoncurrentVersionTransition",
        "NoncurrentVersionExpiration",
        "Transitions",
        "NoncurrentVersionTransitions",
    ];
    if let Some(name) = UNSUPPORTED.iter().find(|n| rule.child(n).is_some()) {
        return Err(S3Error::NotImplemented(match *name {
            "NoncurrentVersionExpiration" => "NoncurrentVersionExpiration",
            _ => "Lifecycle transitions",
        }));
    }
    let id = rule.text_of("ID").map(str::to_string);
    if id.as_ref().is_some_and(|i| i.len() > MAX_ID_LEN) {
        return Err(invalid("ID length should not exceed allowed limit of 255"));
    }
    let enabled = match rule.text_of("Status") {
        Some("Enabled") => true,
        Some("Disabled") => false,
        _ => return Err(S3Error::MalformedXml),
    };
    let (prefix, filter) = match (rule.child("Filter"), rule.text_of("Prefix")) {
        (Some(_), Some(_)) => return Err(S3Error::MalformedXml),
        (Some(filter), None) => {
            if filter.children.iter().any(|c| c.name != "Prefix") {
                return Err(S3Error::NotImplemented(
                    "Lifecycle filters on tags or object size",
                ));
            }
            (filter.text_of("Prefix").unwrap_or("").to_string(), true)
        }
        (None, prefix) => (prefix.unwrap_or("").to_string(), false),
    };
    let mut parsed = LifecycleRule {
        id,
        enabled,
        prefix,
        filter,
        ..LifecycleRule::default()
    };
    if let Some(expiration) = rule.child("Expiration") {
        if expiration.child("ExpiredObjectDeleteMarker").is_some() {
            return Err(S3Error::NotImplemented("ExpiredObjectDeleteMarker"));
        }
        match (expiration.child("Days"), expiration.text_of("Date")) {
            (Some(_), None) => {
                parsed.expiration_days = Some(days(expiration, "Days", "Expiration")?)
            }
            (None, Some(date)) => {
                let at = DateTime::parse_from_rfc3339(date)
                    .map_err(|_| invalid("Invalid date in lifecycle rule"))?;
                if at.to_utc().num_seconds_from_midnight() != 0 {
                    return Err(invalid("'Date' must be at midnight GMT"));
                }
                parsed.expiration_date = Some(at.timestamp());
            }
            _ => return Err(S3Error::MalformedXml),
        }
    }
    if let Some(abort) = rule.child("AbortIncompleteMultipartUpload") {
        parsed.abort_upload_days = Some(days(
            abort,
            "DaysAfterInitiation",
            "AbortIncompleteMultipartUpload",
        )?);
    }
    if parsed.expiration_days.is_none()
        && parsed.expiration_date.is_none()
        && parsed.abort_upload_days.is_none()
    {
        return Err(invalid(
            "At least one action needs to be specified in a rule",
        ));
    }
    Ok(parsed)
}

pub fn parse(body: &[u8]) -> Result<Vec<LifecycleRule>, S3Error> {
    let root = parse_tree(body, "LifecycleConfiguration")?;
    let rules = root
        .all("Rule")
        .map(parse_rule)
        .collect::<Result<Vec<_>, S3Error>>()?;
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(S3Error::MalformedXml);
    }
    for (i, rule) in rules.iter().enumerate() {
        if rule.id.is_some() && rules[..i].iter().any(|r| r.id == rule.id) {
            return Err(invalid(
                "Rule ID must be unique. Found same ID for more than one rule",
            ));
        }
    }
    Ok(rules)
}

pub async fn put_lifecycle(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    req.require_integrity()?;
    gw.cluster.bucket(bucket).await?;
    let rules = parse(&req.read_small_body(BODY_LIMIT).await?)?;
    update_bucket(&gw.cluster, bucket, |b| b.lifecycle = Some(rules)).await?;
    Ok(Response::new(empty()))
}

pub async fn get_lifecycle(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let rules = bucket
        .lifecycle
        .ok_or(S3Error::NoSuchLifecycleConfiguration)?;
    let mut xml = XmlWriter::new("LifecycleConfiguration");
    for rule in &rules {
        xml.open("Rule");
        if let Some(id) = &rule.id {
            xml.elem("ID", id);
        }
        if rule.filter {
            xml.open("Filter").elem("Prefix", &rule.prefix).close();
        } else {
            xml.elem("Prefix", &rule.prefix);
        }
        xml.elem("Status", if rule.enabled { "Enabled" } else { "Disabled" });
        if let Some(days) = rule.expiration_days {
            xml.open("Expiration")
                .elem("Days", days.to_string())
                .close();
        }
        if let Some(date) = rule.expiration_date {
            let date = DateTime::from_timestamp(date, 0).unwrap_or_default();
            xml.open("Expiration")
                .elem("Date", date.format("%Y-%m-%dT%H:%M:%S.000Z").to_string())
                .close();
        }
        if let Some(days) = rule.abort_upload_days {
            xml.open("AbortIncompleteMultipartUpload")
                .elem("DaysAfterInitiation", days.to_string())
                .close();
        }
        xml.close();
    }
    Ok(xml_response(xml))
}

pub async fn delete_lifecycle(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    update_bucket(&gw.cluster, bucket, |b| b.lifecycle = None).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: &str) -> String {
        format!("<LifecycleConfiguration>{rules}</LifecycleConfiguration>")
    }

    #[test]
    fn lifecycle_bodies() {
        let rules = parse(config(
            "<Rule><ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>\
             <Expiration><Days>3</Days></Expiration></Rule>\
             <Rule><Prefix></Prefix><Status>Disabled</Status>\
             <Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration>\
             <AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>",
        ).as_bytes())
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].prefix, "logs/");
        assert!(rules[0].filter && rules[0].enabled);
        assert_eq!(rules[0].expiration_days, Some(3));
        assert_eq!(rules[1].expiration_date, Some(1_893_456_000));
        assert_eq!(rules[1].abort_upload_days, Some(2));
        let bad = |rule: &str| parse(config(rule).as_bytes()).unwrap_err().code();
        assert_eq!(
            bad("<Rule><Status>Enabled</Status></Rule>"),
            "InvalidArgument"
        );
        assert_eq!(
            bad("<Rule><Status>On</Status><Expiration><Days>1</Days></Expiration></Rule>"),
            "MalformedXML"
        );
        assert_eq!(
            bad("<Rule><Status>Enabled</Status><Expiration><Days>0</Days></Expiration></Rule>"),
            "InvalidArgument"
        );
        assert_eq!(bad("<Rule><Status>Enabled</Status><Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration></Rule>"), "InvalidArgument");
        assert_eq!(
            bad("<Rule><Status>Enabled</Status><Transition><Days>1</Days></Transition></Rule>"),
            "NotImplemented"
        );
        assert_eq!(bad("<Rule><Status>Enabled</Status><Filter><Tag><Key>a</Key></Tag></Filter><Expiration><Days>1</Days></Expiration></Rule>"), "NotImplemented");
        assert_eq!(bad("<Rule><ID>a</ID><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule><Rule><ID>a</ID><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"), "InvalidArgument");
        assert_eq!(
            parse(b"<LifecycleConfiguration/>").unwrap_err().code(),
            "MalformedXML"
        );
    }
}
