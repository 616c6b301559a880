//! Bucket CORS: Put/Get/DeleteBucketCors, preflight `OPTIONS` answered from the rules (without
//! authentication, as S3 does), and `Access-Control-*` headers on requests whose origin a rule allows.

use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::s3::error::S3Error;
use crate::s3::response::{empty_response, xml_response, S3Response};
use crate::s3::xml::{parse_tree, XmlWriter};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use node_rpc::body::empty;
use node_rpc::record::CorsRule;

const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];
const MAX_RULES: usize = 100;
const VARY: &str = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";

pub async fn get_bucket_cors(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let rules = bucket.cors.ok_or(S3Error::NoSuchCorsConfiguration)?;
    let mut xml = XmlWriter::new("CORSConfiguration");
    for rule in &rules {
        xml.open("CORSRule");
        if let Some(id) = &rule.id {
            xml.elem("ID", id);
        }
        for h in &rule.allowed_headers {
            xml.elem("AllowedHeader", h);
        }
        for m in &rule.allowed_methods {
            xml.elem("AllowedMethod", m);
        }
        for o in &rule.allowed_origins {
            xml.elem("AllowedOrigin", o);
        }
        for h in &rule.expose_headers {
            xml.elem("ExposeHeader", h);
        }
        if let Some(age) = rule.max_age_seconds {
            xml.elem("MaxAgeSeconds", age.to_string());
        }
        xml.close();
    }
    Ok(xml_response(xml))
}

pub async fn put_bucket_cors(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    req.require_integrity()?;
    let rules = parse(&req.read_small_body(64 * 1024).await?)?;
    update_bucket(&gw.cluster, bucket, |b| b.cors = Some(rules)).await?;
    Ok(Response::new(empty()))
}

pub async fn delete_bucket_cors(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    update_bucket(&gw.cluster, bucket, |b| b.cors = None).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub fn parse(body: &[u8]) -> Result<Vec<CorsRule>, S3Error> {
    let root = parse_tree(body, "CORSConfiguration")?;
    let texts = |rule: &crate::s3::xml::Element, name| -> Vec<String> {
        rule.all(name).map(|e| e.text.trim().to_string()).collect()
    };
    let mut rules = Vec::new();
    for rule in root.all("CORSRule") {
        let parsed = CorsRule {
            id: rule.text_of("ID").map(str::to_string),
            allowed_origins: texts(rule, "AllowedOrigin"),
            allowed_methods: texts(rule, "AllowedMethod"),
            allowed_headers: texts(rule, "AllowedHeader"),
            expose_headers: texts(rule, "ExposeHeader"),
            max_age_seconds: rule
                .text_of("MaxAgeSeconds")
                .map(|v| v.parse().map_err(|_| S3Error::MalformedXml))
                .transpose()?,
        };
        if parsed.allowed_origins.is_empty() || parsed.allowed_methods.is_empty() {
            return Err(S3Error::MalformedXml);
        }
        if let Some(m) = parsed
            .allowed_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(S3Error::InvalidRequest(format!(
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            )));
        }
        for (what, values) in [
            ("AllowedOrigin", &parsed.allowed_origins),
            ("AllowedHeader", &parsed.allowed_headers),
        ] {
            if let Some(v) = values.iter().find(|v| v.matches('*').count() > 1) {
                return Err(S3Error::InvalidRequest(format!(
                    "{what} \"{v}\" can not have more than one wildcard."
                )));
            }
        }
        rules.push(parsed);
    }
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(S3Error::MalformedXml);
    }
    Ok(rules)
}

/// `pattern` with at most one `*` matching any run of characters.
fn wildcard(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value.starts_with(head)
                && value.ends_with(tail)
        }
    }
}

/// The first rule that allows this origin, method and every requested header.
fn matching<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|rule| {
        rule.allowed_origins.iter().any(|o| wildcard(o, origin))
            && rule.allowed_methods.iter().any(|m| m == method)
            && headers.iter().all(|h| {
                rule.allowed_headers
                    .iter()
                    .any(|a| wildcard(&a.to_ascii_lowercase(), h))
            })
    })
}

/// The headers a matching rule grants.
fn grant(headers: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    if rule.allowed_origins.iter().any(|o| o == "*") {
        set("access-control-allow-origin", "*".into());
    } else {
        set("access-control-allow-origin", origin.into());
        set("access-control-allow-credentials", "true".into());
    }
    set(
        "access-control-allow-methods",
        rule.allowed_methods.join(", "),
    );
    if !rule.expose_headers.is_empty() {
        set(
            "access-control-expose-headers",
            rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set("access-control-max-age", age.to_string());
    }
}

/// Answers a preflight `OPTIONS` from the bucket's rules.
pub async fn preflight(
    gw: &Gateway,
    bucket: Option<&str>,
    request: &HeaderMap,
) -> Result<S3Response, S3Error> {
    let header = |name| {
        request
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let bucket = bucket.ok_or(S3Error::CorsBadRequest(
        "Insufficient information. Origin request header needed.",
    ))?;
    let origin = header("origin").ok_or(S3Error::CorsBadRequest(
        "Insufficient information. Origin request header needed.",
    ))?;
    let method = header("access-control-request-method").ok_or(S3Error::CorsBadRequest(
        "Invalid Access-Control-Request-Method header.",
    ))?;
    let requested: Vec<String> = header("access-control-request-headers")
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let bucket = gw.cluster.bucket(bucket).await?;
    let rules = bucket.cors.ok_or(S3Error::CorsForbidden(
        "CORS is not enabled for this bucket.",
    ))?;
    let rule = matching(&rules, origin, method, &requested).ok_or(S3Error::CorsForbidden(
        "This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
    ))?;
    let mut response = Response::new(empty());
    let headers = response.headers_mut();
    grant(headers, rule, origin);
    if let Some(asked) = header("access-control-request-headers").filter(|_| !requested.is_empty())
    {
        if let Ok(v) = HeaderValue::from_str(asked) {
            headers.insert("access-control-allow-headers", v);
        }
    }
    headers.insert("vary", HeaderValue::from_static(VARY));
    Ok(response)
}

/// Adds the `Access-Control-*` headers to the response of a request that carries an `Origin`
/// allowed by one of the bucket's rules.
pub async fn decorate(
    gw: &Gateway,
    bucket: &str,
    origin: &str,
    method: &str,
    response: &mut S3Response,
) {
    let Ok(bucket) = gw.cluster.bucket(bucket).await else {
        return;
    };
    let Some(rules) = bucket.cors else {
        return;
    };
    let headers = response.headers_mut();
    headers.insert("vary", HeaderValue::from_static(VARY));
    if let Some(rule) = matching(&rules, origin, method, &[]) {
        grant(headers, rule, origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*", "http://a.example"));
        assert!(wildcard("http://*.example.com", "http://www.example.com"));
        assert!(!wildcard("http://*.example.com", "http://example.com"));
        assert!(!wildcard("http://a.example", "http://b.example"));
        assert!(wildcard("x-amz-*", "x-amz-date"));
    }

    #[test]
    fn rules_parse_and_match() {
        let rules = parse(
            br#"<CORSConfiguration><CORSRule><AllowedOrigin>http://*.ex.com</AllowedOrigin>
            <AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>
            <AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader>
            <MaxAgeSeconds>300</MaxAgeSeconds></CORSRule></CORSConfiguration>"#,
        )
        .unwrap();
        assert_eq!(rules[0].max_age_seconds, Some(300));
        assert!(matching(&rules, "http://a.ex.com", "PUT", &["content-type".into()]).is_some());
        assert!(matching(&rules, "http://a.ex.com", "DELETE", &[]).is_none());
        assert!(matching(&rules, "http://other.org", "GET", &[]).is_none());
        assert!(matches!(
            parse(b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod></CORSRule></CORSConfiguration>"),
            Err(S3Error::InvalidRequest(_))
        ));
        assert!(parse(b"<CORSConfiguration></CORSConfiguration>").is_err());
    }
}
