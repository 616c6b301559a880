//! Bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration. The rules served, filtered by
//! prefix, tags and object size: Expiration (Days or Date) of current versions, removal of
//! delete markers left alone (ExpiredObjectDeleteMarker), NoncurrentVersionExpiration, and
//! AbortIncompleteMultipartUpload, applied by `background::lifecycle`. Transitions (there is one
//! storage class) are refused as NotImplemented rather than accepted and ignored.

use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::s3::error::S3Error;
use crate::s3::response::{empty_response, xml_response, S3Response};
use crate::s3::xml::{parse_tree, Element, XmlWriter};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Timelike};
use http::{Response, StatusCode};
use node_rpc::body::empty;
use node_rpc::record::LifecycleRule;

const BODY_LIMIT: u64 = 1 << 20;

const MAX_RULES: usize = 1000;

const MAX_ID_LEN: usize = 255;

/// S3's limit on `NewerNoncurrentVersions`.
const MAX_NEWER_NONCURRENT: u32 = 100;

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

/// A size bound of a filter, in bytes.
fn size(element: &Element, name: &str) -> Result<Option<u64>, S3Error> {
    element
        .text_of(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| invalid(&format!("'{name}' must be a non-negative integer")))
        })
        .transpose()
}

/// The conditions of a `<Filter>` (one of `Prefix`, `Tag`, the size bounds, or `And` of them).
fn parse_filter(filter: &Element, rule: &mut LifecycleRule) -> Result<(), S3Error> {
    let conditions = match filter.children.as_slice() {
        [] => return Ok(()),
        [and] if and.name == "And" => and,
        [_] => filter,
        _ => return Err(S3Error::MalformedXml),
    };
    const CONDITIONS: [&str; 4] = [
        "Prefix",
        "Tag",
        "ObjectSizeGreaterThan",
        "ObjectSizeLessThan",
    ];
    if conditions
        .children
        .iter()
        .any(|c| !CONDITIONS.contains(&c.name.as_str()))
    {
        return Err(S3Error::MalformedXml);
    }
    rule.prefix = conditions.text_of("Prefix").unwrap_or("").to_string();
    for tag in conditions.all("Tag") {
        let key = tag.text_of("Key").ok_or(S3Error::MalformedXml)?;
        let value = tag.text_of("Value").unwrap_or("");
        if rule.tags.iter().any(|(k, _)| k == key) {
            return Err(invalid("Duplicate Tag Keys are not allowed."));
        }
        rule.tags.push((key.to_string(), value.to_string()));
    }
    rule.size_greater_than = size(conditions, "ObjectSizeGreaterThan")?;
    rule.size_less_than = size(conditions, "ObjectSizeLessThan")?;
    if let (Some(min), Some(max)) = (rule.size_greater_than, rule.size_less_than) {
        if min >= max {
            return Err(invalid(
                "ObjectSizeGreaterThan must be less than ObjectSizeLessThan",
            ));
        }
    }
    Ok(())
}

/// The `<Expiration>` action: `Days`, `Date` or `ExpiredObjectDeleteMarker`, one of them.
fn parse_expiration(expiration: &Element, rule: &mut LifecycleRule) -> Result<(), S3Error> {
    let delete_marker = expiration.text_of("ExpiredObjectDeleteMarker");
    match (
        expiration.child("Days"),
        expiration.text_of("Date"),
        delete_marker,
    ) {
        (Some(_), None, None) => rule.expiration_days = Some(days(expiration, "Days", "Expiration")?),
        (None, Some(date), None) => {
            let at = DateTime::parse_from_rfc3339(date)
                .map_err(|_| invalid("Invalid date in lifecycle rule"))?;
            if at.to_utc().num_seconds_from_midnight() != 0 {
                return Err(invalid("'Date' must be at midnight GMT"));
            }
            rule.expiration_date = Some(at.timestamp());
        }
        (None, None, Some(flag)) => {
            rule.expired_object_delete_marker = match flag.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(S3Error::MalformedXml),
            }
        }
        (_, _, Some(_)) => {
            return Err(invalid(
                "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle Expiration Policy.",
            ))
        }
        _ => return Err(S3Error::MalformedXml),
    }
    Ok(())
}

/// `<NoncurrentVersionExpiration>`: `NoncurrentDays`, and optionally `NewerNoncurrentVersions`.
fn parse_noncurrent(noncurrent: &Element, rule: &mut LifecycleRule) -> Result<(), S3Error> {
    rule.noncurrent_days = Some(days(
        noncurrent,
        "NoncurrentDays",
        "NoncurrentVersionExpiration",
    )?);
    if noncurrent.child("NewerNoncurrentVersions").is_some() {
        let newer = days(
            noncurrent,
            "NewerNoncurrentVersions",
            "NoncurrentVersionExpiration",
        )?;
        if newer > MAX_NEWER_NONCURRENT {
            return Err(invalid(
                "'NewerNoncurrentVersions' for NoncurrentVersionExpiration action must be less than or equal to 100",
            ));
        }
        rule.newer_noncurrent_versions = Some(newer);
    }
    Ok(())
}

/// An ID for a rule sent without one, as S3 makes up (random, so unique among the rules).
fn generated_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
}

fn parse_rule(rule: &Element) -> Result<LifecycleRule, S3Error> {
    const UNSUPPORTED: [&str; 4] = [
        "Transition",
        "NoncurrentVersionTransition",
        "Transitions",
        "NoncurrentVersionTransitions",
    ];
    if UNSUPPORTED.iter().any(|n| rule.child(n).is_some()) {
        return Err(S3Error::NotImplemented("Lifecycle transitions"));
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
    let mut parsed = LifecycleRule {
        id: Some(id.unwrap_or_else(generated_id)),
        enabled,
        ..LifecycleRule::default()
    };
    match (rule.child("Filter"), rule.text_of("Prefix")) {
        (Some(_), Some(_)) => return Err(S3Error::MalformedXml),
        (Some(filter), None) => {
            parsed.filter = true;
            parse_filter(filter, &mut parsed)?;
        }
        (None, prefix) => parsed.prefix = prefix.unwrap_or("").to_string(),
    }
    if let Some(expiration) = rule.child("Expiration") {
        parse_expiration(expiration, &mut parsed)?;
    }
    if let Some(noncurrent) = rule.child("NoncurrentVersionExpiration") {
        parse_noncurrent(noncurrent, &mut parsed)?;
    }
    if let Some(abort) = rule.child("AbortIncompleteMultipartUpload") {
        // An upload has neither tags nor a size yet, so such a filter could not apply to it.
        if !parsed.tags.is_empty() {
            return Err(invalid(
                "AbortIncompleteMultipartUpload cannot be specified with Tags.",
            ));
        }
        if parsed.size_greater_than.is_some() || parsed.size_less_than.is_some() {
            return Err(invalid(
                "AbortIncompleteMultipartUpload cannot be specified with an object size filter.",
            ));
        }
        parsed.abort_upload_days = Some(days(
            abort,
            "DaysAfterInitiation",
            "AbortIncompleteMultipartUpload",
        )?);
    }
    if parsed.expiration_days.is_none()
        && parsed.expiration_date.is_none()
        && !parsed.expired_object_delete_marker
        && parsed.noncurrent_days.is_none()
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
        if rules[..i].iter().any(|r| r.id == rule.id) {
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
        write_filter(&mut xml, rule);
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
        if rule.expired_object_delete_marker {
            xml.open("Expiration")
                .elem("ExpiredObjectDeleteMarker", "true")
                .close();
        }
        if let Some(days) = rule.noncurrent_days {
            xml.open("NoncurrentVersionExpiration")
                .elem("NoncurrentDays", days.to_string());
            if let Some(newer) = rule.newer_noncurrent_versions {
                xml.elem("NewerNoncurrentVersions", newer.to_string());
            }
            xml.close();
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

/// A rule's filter as it came: the legacy rule-level `Prefix`, or a `Filter` with its one
/// condition, or `And` of several.
fn write_filter(xml: &mut XmlWriter, rule: &LifecycleRule) {
    if !rule.filter {
        xml.elem("Prefix", &rule.prefix);
        return;
    }
    let conditions = usize::from(!rule.prefix.is_empty())
        + rule.tags.len()
        + usize::from(rule.size_greater_than.is_some())
        + usize::from(rule.size_less_than.is_some());
    xml.open("Filter");
    match conditions {
        0 => {
            xml.elem("Prefix", "");
        }
        1 => write_conditions(xml, rule),
        _ => {
            xml.open("And");
            write_conditions(xml, rule);
            xml.close();
        }
    }
    xml.close();
}

fn write_conditions(xml: &mut XmlWriter, rule: &LifecycleRule) {
    if !rule.prefix.is_empty() {
        xml.elem("Prefix", &rule.prefix);
    }
    for (key, value) in &rule.tags {
        xml.open("Tag")
            .elem("Key", key)
            .elem("Value", value)
            .close();
    }
    if let Some(min) = rule.size_greater_than {
        xml.elem("ObjectSizeGreaterThan", min.to_string());
    }
    if let Some(max) = rule.size_less_than {
        xml.elem("ObjectSizeLessThan", max.to_string());
    }
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
        assert_eq!(bad("<Rule><Status>Enabled</Status><Filter><Prefix>a</Prefix><Tag><Key>a</Key></Tag></Filter><Expiration><Days>1</Days></Expiration></Rule>"), "MalformedXML");
        assert_eq!(bad("<Rule><Status>Enabled</Status><Filter><And><ObjectSizeGreaterThan>9</ObjectSizeGreaterThan><ObjectSizeLessThan>9</ObjectSizeLessThan></And></Filter><Expiration><Days>1</Days></Expiration></Rule>"), "InvalidArgument");
        assert_eq!(bad("<Rule><Status>Enabled</Status><Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>"), "InvalidArgument");
        assert_eq!(bad("<Rule><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersions>101</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>"), "InvalidArgument");
        assert_eq!(bad("<Rule><ID>a</ID><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule><Rule><ID>a</ID><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"), "InvalidArgument");
        assert_eq!(
            parse(b"<LifecycleConfiguration/>").unwrap_err().code(),
            "MalformedXML"
        );
    }

    #[test]
    fn filters_and_version_actions_are_kept() {
        let rules = parse(config(
            "<Rule><Filter><And><Prefix>p/</Prefix><Tag><Key>t</Key><Value>1</Value></Tag>\
             <ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter><Status>Enabled</Status>\
             <NoncurrentVersionExpiration><NoncurrentDays>2</NoncurrentDays>\
             <NewerNoncurrentVersions>3</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>\
             <Rule><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>\
             <Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>",
        ).as_bytes())
        .unwrap();
        assert_eq!(rules[0].prefix, "p/");
        assert_eq!(rules[0].tags, [("t".to_string(), "1".to_string())]);
        assert_eq!(rules[0].size_greater_than, Some(10));
        assert_eq!(rules[0].noncurrent_days, Some(2));
        assert_eq!(rules[0].newer_noncurrent_versions, Some(3));
        assert!(rules[1].expired_object_delete_marker);
        assert!(rules.iter().all(|r| r.id.is_some()));
        assert_ne!(rules[0].id, rules[1].id);
        let mut xml = XmlWriter::new("LifecycleConfiguration");
        write_filter(&mut xml, &rules[0]);
        write_filter(&mut xml, &rules[1]);
        let written = xml.finish();
        assert!(written.contains("<Filter><And><Prefix>p/</Prefix><Tag><Key>t</Key><Value>1</Value></Tag><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter>"), "{written}");
        assert!(
            written.contains("<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>"),
            "{written}"
        );
    }
}
