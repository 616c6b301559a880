//! Which signature a request carries, if any, and so which check it gets: none (anonymous),
//! SigV2 (`sigv2`), or SigV4 (`sigv4`), in its Authorization header or as a presigned URL.

use crate::s3::auth::{Authenticated, Credentials, Payload};
use crate::s3::error::S3Error;
use crate::s3::http::{header, Query};
use crate::s3::{sigv2, sigv4};
use http::request::Parts;

/// Whether a request carries no signature of any kind (neither an Authorization header nor a
/// presigned URL's parameters).
pub fn is_anonymous(parts: &Parts) -> bool {
    const SIGNING_PARAMS: [&str; 4] = [
        "X-Amz-Signature",
        "X-Amz-Credential",
        "Signature",
        "AWSAccessKeyId",
    ];
    header(parts, "authorization").is_none()
        && !Query::parse(parts.uri.query().unwrap_or(""))
            .0
            .iter()
            .any(|(name, _)| SIGNING_PARAMS.contains(&name.as_str()))
}

/// An anonymous request's body: as its `x-amz-content-sha256` says (checked like a signed
/// request's), unsigned otherwise. A body whose chunks say they are signed has no signature to
/// check them against.
pub fn anonymous(parts: &Parts) -> Result<Authenticated, S3Error> {
    let payload = match header(parts, "x-amz-content-sha256") {
        Some(value) => sigv4::parse_payload(value)?,
        None => Payload::Unsigned,
    };
    if matches!(payload, Payload::Chunked { signed: true, .. }) {
        return Err(S3Error::AccessDenied("signed chunks need a signature"));
    }
    Ok(Authenticated {
        payload,
        chunk_signer: None,
        presigned: false,
    })
}

/// The access key id a request says it is signed with (SigV4 or SigV2), read before anything is
/// checked so that the key's secret can be looked up; `None` when none can be read (the checks
/// then say why).
pub fn claimed_key(parts: &Parts) -> Option<String> {
    sigv2::claimed_key(parts).or_else(|| sigv4::claimed_key(parts))
}

impl Credentials {
    /// Verifies a request signed in its Authorization header or as a presigned URL, with
    /// Signature Version 4 or 2; `virtual_bucket` is the bucket its host names, if any.
    pub fn authenticate(
        &self,
        parts: &Parts,
        virtual_bucket: Option<&str>,
    ) -> Result<Authenticated, S3Error> {
        let parsed = Query::parse(parts.uri.query().unwrap_or(""));
        if sigv2::form(parts, &parsed).is_some() {
            return self.check_v2(parts, &parsed, virtual_bucket);
        }
        let query = parsed.0;
        if let Some(auth) = header(parts, "authorization") {
            self.check_header_auth(parts, &query, auth)
        } else if query.iter().any(|(k, _)| k == "X-Amz-Signature") {
            self.check_presigned(parts, &query)
        } else {
            Err(S3Error::AccessDenied("anonymous requests are not allowed"))
        }
    }
}

/// Removes the parameters that made a presigned URL's signature (SigV4 or SigV2) from `query`,
/// once checked: they are not part of the operation.
pub fn strip_signature_params(query: &mut Query) {
    query.0.retain(|(name, _)| {
        !sigv4::QUERY_PARAMS.contains(&name.as_str())
            && !sigv2::QUERY_PARAMS.contains(&name.as_str())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_requests_are_refused() {
        let credentials = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        };
        let (parts, ()) = http::Request::get("/b/k").body(()).unwrap().into_parts();
        assert!(matches!(
            credentials.authenticate(&parts, None),
            Err(S3Error::AccessDenied(_))
        ));
    }

    #[test]
    fn the_signature_parameters_of_either_version_are_stripped() {
        let mut v4 =
            Query::parse("X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&X-Amz-Signature=00&x-id=PutObject");
        strip_signature_params(&mut v4);
        let left: Vec<&str> = v4.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(left, ["x-id"]);
        let mut v2 = Query::parse("AWSAccessKeyId=a&Signature=s&Expires=1&versionId=v");
        strip_signature_params(&mut v2);
        assert_eq!(v2.0, [("versionId".to_string(), "v".to_string())]);
    }
}
