//! The policy document of a browser upload (S3's POST Object): when it expires and the
//! conditions every field of the form must meet, as S3 checks them.

use crate::s3::error::S3Error;
use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Form fields that no condition needs to cover: the signature and its fields S3 names, the
/// policy itself and the file.
const UNCOVERED: [&str; 5] = [
    "policy",
    "x-amz-signature",
    "file",
    "awsaccesskeyid",
    "signature",
];

#[derive(Debug, PartialEq, Eq)]
enum Condition {
    /// The field (lowercased, without `$`) equals the value.
    Eq(String, String),
    StartsWith(String, String),
    /// The file's size in bytes lies in `[min, max]`.
    ContentLengthRange(u64, u64),
}

#[derive(Debug)]
pub struct Policy {
    expiration: DateTime<Utc>,
    conditions: Vec<Condition>,
}

fn invalid(why: &str) -> S3Error {
    S3Error::InvalidPolicyDocument(format!("Invalid Policy: {why}"))
}

fn denied(why: impl Into<String>) -> S3Error {
    S3Error::PolicyDenied(why.into())
}

impl Policy {
    /// A policy from the form's base64 `policy` field.
    pub fn parse(base64: &str) -> Result<Policy, S3Error> {
        let json = STANDARD
            .decode(base64.trim())
            .map_err(|_| invalid("Invalid Base64 encoding."))?;
        Policy::from_json(&json)
    }

    /// A policy from its JSON document.
    pub fn from_json(json: &[u8]) -> Result<Policy, S3Error> {
        let doc: Value = serde_json::from_slice(json).map_err(|_| invalid("Invalid JSON."))?;
        let expiration = doc
            .get("expiration")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("Policy missing expiration."))?;
        let expiration = DateTime::parse_from_rfc3339(expiration)
            .map_err(|_| invalid("Invalid 'expiration' value."))?
            .with_timezone(&Utc);
        let conditions = doc
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("Policy missing conditions."))?
            .iter()
            .map(condition)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            expiration,
            conditions,
        })
    }

    /// Checks the form's `fields` (names lowercased) and the bucket against the policy at `now`.
    /// Returns the file size range a `content-length-range` condition sets.
    pub fn check(
        &self,
        fields: &[(String, String)],
        bucket: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(u64, u64)>, S3Error> {
        if now >= self.expiration {
            return Err(denied("Policy expired."));
        }
        let value = |name: &str| -> Option<&str> {
            if name == "bucket" {
                return Some(bucket);
            }
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut range = None;
        for condition in &self.conditions {
            let met = match condition {
                Condition::Eq(name, want) => value(name) == Some(want.as_str()),
                Condition::StartsWith(name, prefix) => {
                    value(name).unwrap_or("").starts_with(prefix.as_str())
                }
                Condition::ContentLengthRange(min, max) => {
                    range = Some((*min, *max));
                    true
                }
            };
            if !met {
                return Err(denied(format!(
                    "Policy Condition failed: {}",
                    describe(condition)
                )));
            }
        }
        for (name, _) in fields {
            let exempt = UNCOVERED.contains(&name.as_str()) || name.starts_with("x-ignore-");
            let covered = self.conditions.iter().any(|c| match c {
                Condition::Eq(n, _) | Condition::StartsWith(n, _) => n == name,
                Condition::ContentLengthRange(..) => false,
            });
            if !exempt && !covered {
                return Err(denied(format!("Extra input fields: {name}")));
            }
        }
        Ok(range)
    }
}

fn describe(condition: &Condition) -> String {
    match condition {
        Condition::Eq(n, v) => format!("[\"eq\", \"${n}\", \"{v}\"]"),
        Condition::StartsWith(n, v) => format!("[\"starts-with\", \"${n}\", \"{v}\"]"),
        Condition::ContentLengthRange(a, b) => format!("[\"content-length-range\", {a}, {b}]"),
    }
}

/// One condition: `{"field": "value"}` or `["eq" | "starts-with", "$field", "value"]` or
/// `["content-length-range", min, max]`.
fn condition(value: &Value) -> Result<Condition, S3Error> {
    if let Some(object) = value.as_object() {
        let mut entries = object.iter();
        return match (entries.next(), entries.next()) {
            (Some((name, Value::String(v))), None) => {
                Ok(Condition::Eq(name.to_ascii_lowercase(), v.clone()))
            }
            _ => Err(invalid("Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.")),
        };
    }
    let array = value
        .as_array()
        .ok_or_else(|| invalid("Invalid Condition: conditions are objects or arrays."))?;
    let operator = array.first().and_then(Value::as_str).unwrap_or("");
    match (operator.to_ascii_lowercase().as_str(), &array[..]) {
        ("content-length-range", [_, min, max]) => {
            let bound = |v: &Value| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| invalid("Invalid content-length-range: bounds are integers."))
            };
            Ok(Condition::ContentLengthRange(bound(min)?, bound(max)?))
        }
        (op @ ("eq" | "starts-with"), [_, Value::String(field), Value::String(v)]) => {
            let name = field
                .strip_prefix('$')
                .ok_or_else(|| invalid("Invalid Condition: field names start with '$'."))?
                .to_ascii_lowercase();
            Ok(if op == "eq" {
                Condition::Eq(name, v.clone())
            } else {
                Condition::StartsWith(name, v.clone())
            })
        }
        _ => Err(invalid("Invalid Condition: unknown operator or arity.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(conditions: &str) -> Policy {
        let doc =
            format!(r#"{{"expiration": "2030-01-01T00:00:00.000Z", "conditions": {conditions}}}"#);
        Policy::parse(&STANDARD.encode(doc)).unwrap()
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn conditions_and_coverage() {
        let p = policy(
            r#"[{"bucket": "b"}, ["starts-with", "$key", "up/"], ["content-length-range", 1, "10"],
                ["eq", "$Content-Type", "text/plain"]]"#,
        );
        let now = Utc::now();
        let ok = fields(&[
            ("key", "up/a"),
            ("content-type", "text/plain"),
            ("policy", "..."),
            ("x-ignore-me", "1"),
        ]);
        assert_eq!(p.check(&ok, "b", now).unwrap(), Some((1, 10)));
        assert!(matches!(
            p.check(&ok, "other", now),
            Err(S3Error::PolicyDenied(_))
        ));
        let wrong_key = fields(&[("key", "down/a"), ("content-type", "text/plain")]);
        assert!(p.check(&wrong_key, "b", now).is_err());
        let extra = fields(&[
            ("key", "up/a"),
            ("content-type", "text/plain"),
            ("acl", "private"),
        ]);
        let Err(S3Error::PolicyDenied(why)) = p.check(&extra, "b", now) else {
            panic!("an uncovered field passed");
        };
        assert_eq!(why, "Extra input fields: acl");
        let expired = "2000-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert!(p
            .check(&ok, "b", now.max(expired) + chrono::Duration::days(9999))
            .is_err());
    }

    #[test]
    fn malformed_policies() {
        for doc in [
            "not base64!",
            &STANDARD.encode("{"),
            &STANDARD.encode(r#"{"conditions": []}"#),
            &STANDARD.encode(
                r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["in", "$key", "a"]]}"#,
            ),
            &STANDARD.encode(
                r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["eq", "key", "a"]]}"#,
            ),
            &STANDARD.encode(
                r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [{"a": "1", "b": "2"}]}"#,
            ),
        ] {
            assert!(
                matches!(Policy::parse(doc), Err(S3Error::InvalidPolicyDocument(_))),
                "{doc}"
            );
        }
    }
}
