//! Bucket policies: the subset of AWS's policy language Tessera enforces, parsed strictly (a
//! document with anything outside the subset is refused, never stored and half applied) and
//! evaluated as AWS evaluates it: an explicit Deny wins, then any Allow.
//!
//! The subset: `Version`, `Id`, and `Statement` (one or a list) of `Sid`, `Effect`
//! (`Allow`/`Deny`), `Principal` (`*`, or `{"AWS": ...}` with `*` or access key ids), `Action`
//! (`s3:GetObject`, `s3:PutObject`, `s3:ListBucket`, `s3:DeleteObject`, `s3:*`), `Resource`
//! (`arn:aws:s3:::bucket` and `arn:aws:s3:::bucket/pattern`, `*` and `?` as wildcards, this
//! bucket only) and `Condition` with `IpAddress` / `NotIpAddress` on `aws:SourceIp` (CIDR blocks).

use crate::s3::error::S3Error;
use serde_json::{Map, Value};
use std::net::IpAddr;

/// Largest policy document AWS accepts.
pub const MAX_POLICY_BYTES: usize = 20 * 1024;

/// The actions a statement can name; `s3:*` names every operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    GetObject,
    PutObject,
    ListBucket,
    DeleteObject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ActionPattern {
    One(Action),
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, PartialEq, Eq)]
enum Principals {
    Everyone,
    Keys(Vec<String>),
}

/// A CIDR block.
#[derive(Debug, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, PartialEq, Eq)]
struct IpCondition {
    /// `NotIpAddress`: the source must be outside every block.
    negated: bool,
    nets: Vec<Net>,
}

#[derive(Debug, PartialEq, Eq)]
struct Statement {
    effect: Effect,
    principals: Principals,
    actions: Vec<ActionPattern>,
    /// Object key patterns (`None`: the bucket itself).
    resources: Vec<Option<String>>,
    conditions: Vec<IpCondition>,
}

/// A bucket's policy, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// What a request is, for a policy.
pub struct Request<'a> {
    /// The access key id; `None` for an anonymous request.
    pub key_id: Option<&'a str>,
    /// The action the operation is; `None` for operations only `s3:*` names.
    pub action: Option<Action>,
    /// The object key; `None` for the bucket itself.
    pub key: Option<&'a str>,
    pub source_ip: Option<IpAddr>,
}

/// What a policy says of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// No statement applies: the key's own permissions decide.
    Silent,
}

fn malformed(message: impl Into<String>) -> S3Error {
    S3Error::MalformedPolicy(message.into())
}

impl Policy {
    /// Parses and checks a policy document for `bucket`.
    pub fn parse(bucket: &str, text: &[u8]) -> Result<Policy, S3Error> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(malformed("Policies must be 20 KB or smaller"));
        }
        let value: Value = serde_json::from_slice(text)
            .map_err(|_| malformed("This policy contains invalid Json"))?;
        let document = value
            .as_object()
            .ok_or_else(|| malformed("This policy contains invalid Json"))?;
        only_fields(document, &["Version", "Id", "Statement"], "policy")?;
        match document.get("Version").and_then(Value::as_str) {
            Some("2012-10-17" | "2008-10-17") | None => {}
            Some(_) => return Err(malformed("The policy's Version is not supported")),
        }
        let statements = match document.get("Statement") {
            Some(Value::Array(list)) if !list.is_empty() => list.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err(malformed("Missing required field Statement")),
        };
        let statements = statements
            .into_iter()
            .map(|s| Statement::parse(bucket, s))
            .collect::<Result<_, _>>()?;
        Ok(Policy { statements })
    }

    /// What the policy says of the request.
    pub fn evaluate(&self, request: &Request) -> Decision {
        let mut decision = Decision::Silent;
        for statement in self.statements.iter().filter(|s| s.applies(request)) {
            match statement.effect {
                Effect::Deny => return Decision::Deny,
                Effect::Allow => decision = Decision::Allow,
            }
        }
        decision
    }

    /// Whether some statement may allow the action to the caller on some resource (and none
    /// denies it everywhere): DeleteObjects is then let through, to be decided key by key.
    pub fn may_allow(
        &self,
        key_id: Option<&str>,
        action: Action,
        source_ip: Option<IpAddr>,
    ) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && s.principals.include(key_id)
                && s.names(Some(action))
                && s.conditions.iter().all(|c| c.holds(source_ip))
        })
    }

    /// AWS's "public" test: some Allow statement is for everyone and not limited to source
    /// addresses.
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && s.principals == Principals::Everyone
                && !s.conditions.iter().any(|c| !c.negated)
        })
    }
}

impl Statement {
    fn parse(bucket: &str, value: &Value) -> Result<Statement, S3Error> {
        let fields = value
            .as_object()
            .ok_or_else(|| malformed("A Statement must be an object"))?;
        only_fields(
            fields,
            &[
                "Sid",
                "Effect",
                "Principal",
                "Action",
                "Resource",
                "Condition",
            ],
            "Statement",
        )?;
        let effect = match fields.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            Some(other) => return Err(malformed(format!("Invalid effect: {other}"))),
            None => return Err(malformed("Missing required field Effect")),
        };
        let principals = match fields.get("Principal") {
            Some(Value::String(s)) if s == "*" => Principals::Everyone,
            Some(Value::Object(map)) => {
                only_fields(map, &["AWS"], "Principal")?;
                let ids = strings(map.get("AWS"), "Principal")?;
                if ids.iter().any(|id| id == "*") {
                    Principals::Everyone
                } else if let Some(bad) = ids.iter().find(|id| !is_key_id(id)) {
                    return Err(malformed(format!(
                        "Invalid principal in policy: {bad} (a principal is * or an access key id)"
                    )));
                } else {
                    Principals::Keys(ids)
                }
            }
            Some(_) => return Err(malformed("Invalid principal in policy")),
            None => return Err(malformed("Missing required field Principal")),
        };
        let actions = strings(fields.get("Action"), "Action")?
            .iter()
            .map(|a| parse_action(a))
            .collect::<Result<_, _>>()?;
        let resources = strings(fields.get("Resource"), "Resource")?
            .iter()
            .map(|r| parse_resource(bucket, r))
            .collect::<Result<_, _>>()?;
        let conditions = match fields.get("Condition") {
            None => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(operator, keys)| IpCondition::parse(operator, keys))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(malformed("A Condition must be an object")),
        };
        Ok(Statement {
            effect,
            principals,
            actions,
            resources,
            conditions,
        })
    }

    fn names(&self, action: Option<Action>) -> bool {
        self.actions.iter().any(|a| match (a, action) {
            (ActionPattern::All, _) => true,
            (ActionPattern::One(named), Some(action)) => *named == action,
            (ActionPattern::One(_), None) => false,
        })
    }

    fn applies(&self, request: &Request) -> bool {
        self.principals.include(request.key_id)
            && self.names(request.action)
            && self.resources.iter().any(|r| match (r, request.key) {
                (None, None) => true,
                (Some(pattern), Some(key)) => glob(pattern.as_bytes(), key.as_bytes()),
                _ => false,
            })
            && self.conditions.iter().all(|c| c.holds(request.source_ip))
    }
}

impl Principals {
    fn include(&self, key_id: Option<&str>) -> bool {
        match (self, key_id) {
            (Principals::Everyone, _) => true,
            (Principals::Keys(ids), Some(id)) => ids.iter().any(|k| k == id),
            (Principals::Keys(_), None) => false,
        }
    }
}

impl IpCondition {
    fn parse(operator: &str, keys: &Value) -> Result<IpCondition, S3Error> {
        let negated = match operator {
            "IpAddress" => false,
            "NotIpAddress" => true,
            other => {
                return Err(malformed(format!(
                    "Condition operator {other} is not supported (only IpAddress and NotIpAddress)"
                )))
            }
        };
        let keys = keys
            .as_object()
            .ok_or_else(|| malformed(format!("{operator} must be an object")))?;
        if keys.len() != 1 {
            return Err(malformed(format!(
                "{operator} must name aws:SourceIp alone"
            )));
        }
        let (key, values) = keys.iter().next().expect("one entry");
        if !key.eq_ignore_ascii_case("aws:SourceIp") {
            return Err(malformed(format!(
                "Condition key {key} is not supported (only aws:SourceIp)"
            )));
        }
        let nets = strings(Some(values), "aws:SourceIp")?
            .iter()
            .map(|v| Net::parse(v))
            .collect::<Result<_, _>>()?;
        Ok(IpCondition { negated, nets })
    }

    fn holds(&self, ip: Option<IpAddr>) -> bool {
        let inside = ip.is_some_and(|ip| self.nets.iter().any(|n| n.contains(ip)));
        inside != self.negated
    }
}

impl Net {
    fn parse(text: &str) -> Result<Net, S3Error> {
        let bad = || {
            malformed(format!(
                "Invalid IP address or CIDR block in aws:SourceIp: {text}"
            ))
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (net, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (net >> shift) == (ip >> shift)
    }
}

/// Refuses fields outside the subset, naming the first.
fn only_fields(map: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), S3Error> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(field) => Err(malformed(format!(
            "{field} in a {what} is not supported by Tessera"
        ))),
        None => Ok(()),
    }
}

/// A string or a non-empty list of strings.
fn strings(value: Option<&Value>, what: &str) -> Result<Vec<String>, S3Error> {
    let list = match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| malformed(format!("{what} must hold strings")))?,
        Some(_) => {
            return Err(malformed(format!(
                "{what} must be a string or a list of them"
            )))
        }
        None => return Err(malformed(format!("Missing required field {what}"))),
    };
    Ok(list)
}

fn is_key_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn parse_action(text: &str) -> Result<ActionPattern, S3Error> {
    let action = match text.to_ascii_lowercase().as_str() {
        "s3:*" | "*" => ActionPattern::All,
        "s3:getobject" => ActionPattern::One(Action::GetObject),
        "s3:putobject" => ActionPattern::One(Action::PutObject),
        "s3:listbucket" => ActionPattern::One(Action::ListBucket),
        "s3:deleteobject" => ActionPattern::One(Action::DeleteObject),
        _ => {
            return Err(malformed(format!(
                "Action {text} is not supported by Tessera (only s3:GetObject, s3:PutObject, \
                 s3:ListBucket, s3:DeleteObject and s3:*)"
            )))
        }
    };
    Ok(action)
}

/// A resource of this bucket: `None` for the bucket, the key pattern for objects.
fn parse_resource(bucket: &str, text: &str) -> Result<Option<String>, S3Error> {
    let rest = text
        .strip_prefix("arn:aws:s3:::")
        .ok_or_else(|| malformed(format!("Policy has invalid resource: {text}")))?;
    let (name, pattern) = match rest.split_once('/') {
        Some((name, pattern)) => (name, Some(pattern.to_string())),
        None => (rest, None),
    };
    if text.contains("${") {
        return Err(malformed(format!(
            "Policy variables are not supported by Tessera: {text}"
        )));
    }
    if name != bucket {
        return Err(malformed(format!(
            "Policy has invalid resource: {text} (not this bucket)"
        )));
    }
    Ok(pattern)
}

/// `*` matches any run of bytes, `?` any one byte.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC_PREFIX: &str = r#"{
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws:s3:::site/public/*"
        }]
    }"#;

    fn request<'a>(
        key_id: Option<&'a str>,
        action: Option<Action>,
        key: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            key_id,
            action,
            key,
            source_ip: Some("10.1.2.3".parse().unwrap()),
        }
    }

    #[test]
    fn a_public_prefix_is_readable_by_anyone_and_nothing_else_is() {
        let policy = Policy::parse("site", PUBLIC_PREFIX.as_bytes()).unwrap();
        let get = |key| policy.evaluate(&request(None, Some(Action::GetObject), Some(key)));
        assert_eq!(get("public/a.css"), Decision::Allow);
        assert_eq!(get("public/deep/x.js"), Decision::Allow);
        assert_eq!(get("private/a"), Decision::Silent);
        assert_eq!(get("publicity"), Decision::Silent);
        let put = policy.evaluate(&request(None, Some(Action::PutObject), Some("public/a")));
        assert_eq!(put, Decision::Silent);
        assert_eq!(
            policy.evaluate(&request(None, None, None)),
            Decision::Silent
        );
        assert!(policy.is_public());
    }

    #[test]
    fn deny_wins_and_principals_and_addresses_count() {
        let text = r#"{"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["TKREADER"]}, "Action": "s3:*",
             "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
             "Resource": "arn:aws:s3:::b/*",
             "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "::1"]}}}
        ]}"#;
        let policy = Policy::parse("b", text.as_bytes()).unwrap();
        let from = |ip: &str, action| {
            policy.evaluate(&Request {
                key_id: Some("TKREADER"),
                action: Some(action),
                key: Some("k"),
                source_ip: Some(ip.parse().unwrap()),
            })
        };
        assert_eq!(from("10.9.9.9", Action::DeleteObject), Decision::Allow);
        assert_eq!(from("192.168.1.1", Action::DeleteObject), Decision::Deny);
        assert_eq!(from("::1", Action::DeleteObject), Decision::Allow);
        assert_eq!(
            from("::ffff:10.0.0.1", Action::DeleteObject),
            Decision::Allow
        );
        assert_eq!(from("192.168.1.1", Action::GetObject), Decision::Allow);
        let other = policy.evaluate(&request(
            Some("TKOTHER"),
            Some(Action::GetObject),
            Some("k"),
        ));
        assert_eq!(other, Decision::Silent);
        assert!(!policy.is_public());
        assert!(policy.may_allow(Some("TKREADER"), Action::DeleteObject, None));
        assert!(!policy.may_allow(Some("TKOTHER"), Action::DeleteObject, None));
    }

    #[test]
    fn an_address_condition_makes_a_policy_not_public() {
        let text = r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
            "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}}"#;
        let policy = Policy::parse("b", text.as_bytes()).unwrap();
        assert!(!policy.is_public());
        let at = |ip: &str| {
            policy.evaluate(&Request {
                key_id: None,
                action: Some(Action::GetObject),
                key: Some("k"),
                source_ip: Some(ip.parse().unwrap()),
            })
        };
        assert_eq!(at("192.0.2.77"), Decision::Allow);
        assert_eq!(at("192.0.3.1"), Decision::Silent);
    }

    #[test]
    fn anything_outside_the_subset_is_refused_by_name() {
        let refused = |text: &str| match Policy::parse("b", text.as_bytes()) {
            Err(S3Error::MalformedPolicy(message)) => message,
            other => panic!("{text}: {other:?}"),
        };
        let statement = |extra: &str| {
            format!(
                r#"{{"Statement": [{{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::b/*"{extra}}}]}}"#
            )
        };
        assert!(refused(&statement(r#", "NotAction": "s3:PutObject""#)).contains("NotAction"));
        assert!(refused(&statement(
            r#", "Condition": {"StringLike": {"aws:Referer": "x"}}"#
        ))
        .contains("StringLike"));
        assert!(refused(&statement(
            r#", "Condition": {"IpAddress": {"aws:UserAgent": "x"}}"#
        ))
        .contains("aws:UserAgent"));
        assert!(refused(&statement(
            r#", "Condition": {"IpAddress": {"aws:SourceIp": "300.1.1.1/8"}}"#
        ))
        .contains("300.1.1.1"));
        assert!(refused(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObjectAcl",
                "Resource": "arn:aws:s3:::b/*"}}"#
        )
        .contains("s3:GetObjectAcl"));
        assert!(refused(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::other/*"}}"#
        )
        .contains("invalid resource"));
        assert!(refused(
            r#"{"Statement": {"Effect": "Allow", "Principal": {"Service": "x"},
                "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}}"#
        )
        .contains("Service"));
        assert!(refused(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::b/${aws:username}/*"}}"#
        )
        .contains("variables"));
        assert!(refused(r#"{"Statement": []}"#).contains("Statement"));
        assert!(refused("not json").contains("invalid Json"));
        assert!(refused(r#"{"Version": "2020-01-01", "Statement": []}"#).contains("Version"));
        assert!(refused(&statement(r#", "Effect2": 1"#)).contains("Effect2"));
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"abbc"));
        assert!(glob(b"public/*", b"public/x/y"));
        assert!(!glob(b"public/*", b"public"));
        assert!(glob(b"*.css", b"x/y.css"));
        assert!(!glob(b"*.css", b"x/y.cssx"));
    }
}
