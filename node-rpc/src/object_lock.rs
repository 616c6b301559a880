//! S3 Object Lock as records keep it: a version's retention and legal hold, a bucket's lock
//! configuration, and the one rule that says whether a version may be deleted now.
//!
//! The rule lives here, with the records, because both sides apply it: the gateway before it
//! purges a version (it has the quorum's view of the lock), and every holder again when the purge
//! reaches it (with its own record and its own clock), so that no path that purges, today's or a
//! later one, can forget it. Times are the server's own clock: a client's `Date` never counts.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// How strictly a retention holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    /// Nobody may delete the version or shorten its retention until it expires, except a request
    /// with `x-amz-bypass-governance-retention: true`.
    Governance,
    /// Nobody may delete the version, shorten its retention or change its mode until it expires.
    Compliance,
}

impl LockMode {
    /// The mode S3 names `GOVERNANCE` or `COMPLIANCE`.
    pub fn parse(s: &str) -> Option<LockMode> {
        match s {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// A version's retention: it may not be deleted before `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub mode: LockMode,
    /// Milliseconds since the Unix epoch.
    pub until: i64,
}

impl Retention {
    pub fn in_force(&self, now: i64) -> bool {
        self.until > now
    }
}

/// A version's Object Lock state, as its record keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// `None` until a legal hold was first set on or off (S3 then answers GetObjectLegalHold
    /// with `NoSuchObjectLockConfiguration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<bool>,
}

impl ObjectLock {
    pub fn is_none(&self) -> bool {
        self.retention.is_none() && self.legal_hold.is_none()
    }

    /// Whether the version may be deleted at `now` (milliseconds since the epoch): not under a
    /// legal hold, nor under a retention in force, unless that is GOVERNANCE and the request
    /// bypasses it.
    pub fn protection(&self, now: i64, bypass_governance: bool) -> Option<Protection> {
        if self.legal_hold == Some(true) {
            return Some(Protection::LegalHold);
        }
        match self.retention.filter(|r| r.in_force(now)) {
            Some(r) if r.mode == LockMode::Compliance || !bypass_governance => {
                Some(Protection::Retention(r.mode))
            }
            _ => None,
        }
    }
}

/// A bucket's Object Lock configuration. A bucket has one from its creation with
/// `x-amz-bucket-object-lock-enabled: true` (or from PutObjectLockConfiguration with versioning
/// enabled) and keeps it for good.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketLock {
    /// The retention given to new versions that do not ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_retention: Option<DefaultRetention>,
}

/// A bucket's default retention: a mode and a period, in days or in years.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    pub mode: LockMode,
    pub period: Period,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Period {
    Days(u32),
    Years(u32),
}

const DAY_MILLIS: i64 = 86_400_000;

impl DefaultRetention {
    /// The retention of a version written at `written` (milliseconds since the epoch). A year is
    /// 365 days, as AWS counts it for default retention.
    pub fn from(&self, written: i64) -> Retention {
        let days = match self.period {
            Period::Days(d) => i64::from(d),
            Period::Years(y) => i64::from(y) * 365,
        };
        Retention {
            mode: self.mode,
            until: written.saturating_add(days * DAY_MILLIS),
        }
    }
}

/// Why a version may not be deleted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    LegalHold,
    Retention(LockMode),
}

/// This process's clock, in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_protects_a_version() {
        let governance = Retention {
            mode: LockMode::Governance,
            until: 1_000,
        };
        let compliance = Retention {
            mode: LockMode::Compliance,
            ..governance
        };
        let lock = |retention, legal_hold| ObjectLock {
            retention,
            legal_hold,
        };
        assert_eq!(lock(None, None).protection(0, false), None);
        assert_eq!(lock(None, Some(false)).protection(0, false), None);
        assert_eq!(
            lock(None, Some(true)).protection(0, true),
            Some(Protection::LegalHold),
            "nothing bypasses a legal hold"
        );
        assert_eq!(
            lock(Some(governance), None).protection(999, false),
            Some(Protection::Retention(LockMode::Governance))
        );
        assert_eq!(lock(Some(governance), None).protection(999, true), None);
        assert_eq!(
            lock(Some(compliance), None).protection(999, true),
            Some(Protection::Retention(LockMode::Compliance))
        );
        assert_eq!(lock(Some(compliance), None).protection(1_000, false), None);
    }

    #[test]
    fn default_retention_counts_from_the_write() {
        let days = DefaultRetention {
            mode: LockMode::Governance,
            period: Period::Days(2),
        };
        assert_eq!(days.from(5).until, 5 + 2 * DAY_MILLIS);
        let years = DefaultRetention {
            mode: LockMode::Compliance,
            period: Period::Years(1),
        };
        assert_eq!(years.from(0).until, 365 * DAY_MILLIS);
        assert_eq!(years.from(0).mode, LockMode::Compliance);
    }
}
