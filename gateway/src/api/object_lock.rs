//! S3 Object Lock: a bucket's configuration (`?object-lock`), a version's retention
//! (`?retention`) and legal hold (`?legal-hold`), and the `x-amz-object-lock-*` headers of the
//! writes that make a version.
//!
//! The state lives in the records (`node_rpc::object_lock`): the bucket's in its record, a
//! version's in each holder's record of it, changed as tags are, by a new revision of the
//! version. What a lock forbids is enforced where versions are purged (`ops::delete`, and each
//! holder again). A bucket with Object Lock always has versioning enabled, so an overwrite is a
//! new version and never replaces a locked one.

use crate::api::access::Permission;
use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::ops::lookup::find_version;
use crate::ops::revision::revise_version;
use crate::s3::error::S3Error;
use crate::s3::object_lock::{format_date, on_name};
use crate::s3::response::{xml_response, S3Response};
use crate::s3::xml::{parse_tree, XmlWriter};
use chrono::DateTime;
use http::Response;
use node_rpc::body::empty;
use node_rpc::object_lock::{
    now_millis, BucketLock, DefaultRetention, LockMode, ObjectLock, Period, Retention,
};
use node_rpc::record::{BucketRecord, Versioning};

const BODY_LIMIT: u64 = 64 * 1024;

/// AWS's longest default retention.
const MAX_DAYS: u32 = 36_500;
const MAX_YEARS: u32 = 100;

fn missing_configuration() -> S3Error {
    S3Error::InvalidRequest("Bucket is missing Object Lock Configuration".into())
}

fn in_the_past() -> S3Error {
    S3Error::InvalidArgument("The retain until date must be in the future!".into())
}

/// Whether a request may delete or shorten a GOVERNANCE retention: it asks to
/// (`x-amz-bypass-governance-retention: true`) and its key is an owner of the bucket. Without
/// that permission the header changes nothing, as in S3, and the retention then refuses.
pub fn bypass_governance(req: &S3Request, bucket: &BucketRecord) -> bool {
    req.header("x-amz-bypass-governance-retention")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        && req.caller.principal.may(bucket, Permission::Owner)
}

/// The Object Lock state a PutObject, CopyObject or CreateMultipartUpload asks for with its
/// `x-amz-object-lock-*` headers, checked as S3 checks them.
pub fn requested(req: &S3Request, bucket: &BucketRecord) -> Result<ObjectLock, S3Error> {
    let mode = req.header("x-amz-object-lock-mode");
    let until = req.header("x-amz-object-lock-retain-until-date");
    let legal_hold = req.header("x-amz-object-lock-legal-hold");
    if mode.is_none() && until.is_none() && legal_hold.is_none() {
        return Ok(ObjectLock::default());
    }
    if bucket.object_lock.is_none() {
        return Err(missing_configuration());
    }
    let retention = match (mode, until) {
        (None, None) => None,
        (Some(mode), Some(until)) => {
            let mode = LockMode::parse(mode.trim())
                .ok_or_else(|| S3Error::InvalidArgument("Unknown wormMode directive.".into()))?;
            let until = parse_date(until).ok_or_else(|| {
                S3Error::InvalidArgument(
                    "The retain until date must be provided in ISO 8601 format".into(),
                )
            })?;
            if until <= now_millis() {
                return Err(in_the_past());
            }
            Some(Retention { mode, until })
        }
        _ => return Err(S3Error::InvalidArgument(
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
                .into(),
        )),
    };
    let legal_hold = legal_hold
        .map(|v| {
            on_off(v.trim()).ok_or_else(|| {
                S3Error::InvalidArgument("Legal Hold must be either of 'ON' or 'OFF'".into())
            })
        })
        .transpose()?;
    Ok(ObjectLock {
        retention,
        legal_hold,
    })
}

fn on_off(s: &str) -> Option<bool> {
    match s {
        "ON" => Some(true),
        "OFF" => Some(false),
        _ => None,
    }
}

/// An ISO 8601 time with its offset (`2030-01-01T00:00:00Z`, `...00.000Z`, `...+02:00`), in
/// milliseconds since the epoch.
fn parse_date(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// An `<ObjectLockConfiguration>` body: `ObjectLockEnabled` (`Enabled`, the only value; it may
/// be left out once the bucket has Object Lock) and an optional default retention.
pub fn parse_configuration(body: &[u8], enabled: bool) -> Result<BucketLock, S3Error> {
    let root = parse_tree(body, "ObjectLockConfiguration")?;
    match root.text_of("ObjectLockEnabled") {
        Some("Enabled") => {}
        None if enabled => {}
        _ => return Err(S3Error::MalformedXml),
    }
    let Some(rule) = root.child("Rule") else {
        return Ok(BucketLock::default());
    };
    let default = rule
        .child("DefaultRetention")
        .ok_or(S3Error::MalformedXml)?;
    let mode = default
        .text_of("Mode")
        .and_then(LockMode::parse)
        .ok_or(S3Error::MalformedXml)?;
    let number = |name| {
        default
            .text_of(name)
            .map(|n| n.parse::<i64>().map_err(|_| S3Error::MalformedXml))
            .transpose()
    };
    let positive = |n: i64, max: u32| {
        if n <= 0 {
            return Err(S3Error::InvalidArgument(
                "Default retention period must be a positive integer value".into(),
            ));
        }
        u32::try_from(n).ok().filter(|n| *n <= max).ok_or_else(|| {
            S3Error::InvalidArgument("Default retention period is too large.".into())
        })
    };
    let period = match (number("Days")?, number("Years")?) {
        (Some(days), None) => Period::Days(positive(days, MAX_DAYS)?),
        (None, Some(years)) => Period::Years(positive(years, MAX_YEARS)?),
        _ => return Err(S3Error::MalformedXml),
    };
    Ok(BucketLock {
        default_retention: Some(DefaultRetention { mode, period }),
    })
}

/// PutObjectLockConfiguration: enables Object Lock on a bucket with versioning enabled (for
/// good), or changes its default retention.
pub async fn put_configuration(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    req.require_integrity()?;
    let record = gw.cluster.bucket(bucket).await?;
    let body = req.read_small_body(BODY_LIMIT).await?;
    let lock = parse_configuration(&body, record.object_lock.is_some())?;
    if record.versioning != Some(Versioning::Enabled) {
        return Err(S3Error::InvalidBucketState(
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
        ));
    }
    update_bucket(&gw.cluster, bucket, |b| {
        b.versioning = Some(Versioning::Enabled);
        b.object_lock = Some(lock);
    })
    .await?;
    Ok(Response::new(empty()))
}

pub async fn get_configuration(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let lock = bucket
        .object_lock
        .ok_or(S3Error::ObjectLockConfigurationNotFound)?;
    let mut xml = XmlWriter::new("ObjectLockConfiguration");
    xml.elem("ObjectLockEnabled", "Enabled");
    if let Some(default) = lock.default_retention {
        let (unit, n) = match default.period {
            Period::Days(d) => ("Days", d),
            Period::Years(y) => ("Years", y),
        };
        xml.open("Rule")
            .open("DefaultRetention")
            .elem("Mode", default.mode.name())
            .elem(unit, n.to_string())
            .close()
            .close();
    }
    Ok(xml_response(xml))
}

/// A `<Retention>` body: a mode and a date, or neither (to remove a retention).
pub fn parse_retention(body: &[u8]) -> Result<Option<Retention>, S3Error> {
    let root = parse_tree(body, "Retention")?;
    match (root.text_of("Mode"), root.text_of("RetainUntilDate")) {
        (None, None) => Ok(None),
        (Some(mode), Some(until)) => Ok(Some(Retention {
            mode: LockMode::parse(mode).ok_or(S3Error::MalformedXml)?,
            until: parse_date(until).ok_or(S3Error::MalformedXml)?,
        })),
        _ => Err(S3Error::MalformedXml),
    }
}

/// Whether a version's retention may become `new` at `now`: anything once the old one has
/// expired; while a COMPLIANCE one is in force only the same mode to the same or a later date;
/// while a GOVERNANCE one is, the same, or anything with `bypass`.
fn may_change(old: Option<&Retention>, new: Option<&Retention>, now: i64, bypass: bool) -> bool {
    let Some(old) = old.filter(|r| r.in_force(now)) else {
        return true;
    };
    let kept = new.is_some_and(|n| n.mode == old.mode && n.until >= old.until);
    kept || (old.mode == LockMode::Governance && bypass)
}

/// The bucket of a retention or legal hold request, which must have Object Lock.
async fn lock_bucket(gw: &Gateway, bucket: &str) -> Result<BucketRecord, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    match bucket.object_lock {
        Some(_) => Ok(bucket),
        None => Err(missing_configuration()),
    }
}

/// The lock of the version a GetObjectRetention or GetObjectLegalHold names.
async fn version_lock(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: &S3Request,
) -> Result<ObjectLock, S3Error> {
    let bucket = lock_bucket(gw, bucket).await?;
    let which = req.version_param()?;
    let found = find_version(&gw.cluster, &bucket, key, which, false).await?;
    Ok(found.record.lock)
}

pub async fn put_retention(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let bucket = lock_bucket(gw, bucket).await?;
    let which = req.version_param()?;
    let bypass = bypass_governance(&req, &bucket);
    let retention = parse_retention(&req.read_small_body(BODY_LIMIT).await?)?;
    let now = now_millis();
    if retention.is_some_and(|r| !r.in_force(now)) {
        return Err(in_the_past());
    }
    revise_version(&gw.cluster, &bucket, key, which, |record| {
        if !may_change(
            record.lock.retention.as_ref(),
            retention.as_ref(),
            now,
            bypass,
        ) {
            let shortened = "the version's retention may not be shortened or removed";
            return Err(S3Error::AccessDenied(shortened).into());
        }
        record.lock.retention = retention;
        Ok(())
    })
    .await?;
    Ok(Response::new(empty()))
}

pub async fn get_retention(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let retention = version_lock(gw, bucket, key, &req)
        .await?
        .retention
        .ok_or(S3Error::NoSuchObjectLockConfiguration)?;
    let mut xml = XmlWriter::new("Retention");
    xml.elem("Mode", retention.mode.name())
        .elem("RetainUntilDate", format_date(retention.until));
    Ok(xml_response(xml))
}

pub async fn put_legal_hold(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let bucket = lock_bucket(gw, bucket).await?;
    let which = req.version_param()?;
    let body = req.read_small_body(BODY_LIMIT).await?;
    let root = parse_tree(&body, "LegalHold")?;
    let on = root
        .text_of("Status")
        .and_then(on_off)
        .ok_or(S3Error::MalformedXml)?;
    revise_version(&gw.cluster, &bucket, key, which, |record| {
        record.lock.legal_hold = Some(on);
        Ok(())
    })
    .await?;
    Ok(Response::new(empty()))
}

pub async fn get_legal_hold(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let on = version_lock(gw, bucket, key, &req)
        .await?
        .legal_hold
        .ok_or(S3Error::NoSuchObjectLockConfiguration)?;
    let mut xml = XmlWriter::new("LegalHold");
    xml.elem("Status", on_name(on));
    Ok(xml_response(xml))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(mode: LockMode, until: i64) -> Retention {
        Retention { mode, until }
    }

    #[test]
    fn retention_changes() {
        use LockMode::*;
        let compliance = retention(Compliance, 100);
        let governance = retention(Governance, 100);
        for bypass in [false, true] {
            assert!(may_change(None, None, 0, bypass));
            assert!(may_change(
                Some(&compliance),
                Some(&retention(Compliance, 101)),
                0,
                bypass
            ));
            assert!(!may_change(
                Some(&compliance),
                Some(&retention(Compliance, 99)),
                0,
                bypass
            ));
            assert!(!may_change(Some(&compliance), None, 0, bypass));
            assert!(!may_change(
                Some(&compliance),
                Some(&retention(Governance, 200)),
                0,
                bypass
            ));
            assert!(may_change(Some(&compliance), None, 100, bypass), "expired");
            assert!(may_change(
                Some(&governance),
                Some(&retention(Governance, 100)),
                0,
                bypass
            ));
        }
        assert!(!may_change(
            Some(&governance),
            Some(&retention(Governance, 99)),
            0,
            false
        ));
        assert!(may_change(
            Some(&governance),
            Some(&retention(Governance, 99)),
            0,
            true
        ));
        assert!(!may_change(Some(&governance), None, 0, false));
        assert!(may_change(Some(&governance), None, 0, true));
        assert!(!may_change(
            Some(&governance),
            Some(&retention(Compliance, 200)),
            0,
            false
        ));
    }

    #[test]
    fn configuration_bodies() {
        let body = |inner: &str| {
            format!("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>{inner}</ObjectLockConfiguration>")
        };
        let rule = |inner: &str| {
            body(&format!(
                "<Rule><DefaultRetention>{inner}</DefaultRetention></Rule>"
            ))
        };
        assert_eq!(
            parse_configuration(body("").as_bytes(), false).unwrap(),
            BucketLock::default()
        );
        assert_eq!(
            parse_configuration(
                rule("<Mode>COMPLIANCE</Mode><Years>2</Years>").as_bytes(),
                false
            )
            .unwrap()
            .default_retention,
            Some(DefaultRetention {
                mode: LockMode::Compliance,
                period: Period::Years(2)
            })
        );
        for malformed in [
            rule("<Mode>COMPLIANCE</Mode>"),
            rule("<Mode>COMPLIANCE</Mode><Days>1</Days><Years>1</Years>"),
            rule("<Mode>compliance</Mode><Days>1</Days>"),
            rule("<Mode>GOVERNANCE</Mode><Days>x</Days>"),
            "<ObjectLockConfiguration><ObjectLockEnabled>Disabled</ObjectLockEnabled></ObjectLockConfiguration>".into(),
            "<ObjectLockConfiguration/>".into(),
        ] {
            assert!(
                matches!(parse_configuration(malformed.as_bytes(), false), Err(S3Error::MalformedXml)),
                "{malformed}"
            );
        }
        assert!(parse_configuration(b"<ObjectLockConfiguration/>", true).is_ok());
        for invalid in [
            "<Days>0</Days>",
            "<Days>-1</Days>",
            "<Days>36501</Days>",
            "<Years>101</Years>",
        ] {
            let xml = rule(&format!("<Mode>GOVERNANCE</Mode>{invalid}"));
            assert!(
                matches!(
                    parse_configuration(xml.as_bytes(), false),
                    Err(S3Error::InvalidArgument(_))
                ),
                "{invalid}"
            );
        }
    }

    #[test]
    fn retention_bodies_and_dates() {
        let r = parse_retention(
            b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2030-01-01T00:00:00.000Z</RetainUntilDate></Retention>",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.mode, LockMode::Governance);
        assert_eq!(format_date(r.until), "2030-01-01T00:00:00.000Z");
        assert_eq!(parse_date("2030-01-01T02:00:00+02:00"), Some(r.until));
        assert_eq!(parse_retention(b"<Retention/>").unwrap(), None);
        assert!(parse_retention(b"<Retention><Mode>GOVERNANCE</Mode></Retention>").is_err());
        assert!(parse_date("2030-01-01").is_none());
        assert!(parse_date("tomorrow").is_none());
    }
}
