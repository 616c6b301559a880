//! Building S3 responses without panicking: every header value a client influenced is checked
//! before it goes into a response, and a builder that fails anyway becomes a 500, not a panic.

use crate::s3::error::S3Error;
use crate::s3::http::Query;
use crate::s3::xml::XmlWriter;
use http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING,
    CONTENT_LANGUAGE, CONTENT_TYPE, EXPIRES,
};
use http::{Response, StatusCode};
use node_rpc::body::{empty, full, HttpBody};

pub type S3Response = Response<HttpBody>;

/// The query parameters of a GET or HEAD that override a header of the response, as S3 honours
/// them, with the header each sets.
pub const RESPONSE_OVERRIDES: [(&str, HeaderName); 6] = [
    ("response-cache-control", CACHE_CONTROL),
    ("response-content-disposition", CONTENT_DISPOSITION),
    ("response-content-encoding", CONTENT_ENCODING),
    ("response-content-language", CONTENT_LANGUAGE),
    ("response-content-type", CONTENT_TYPE),
    ("response-expires", EXPIRES),
];

/// Finishes a response builder. It fails only on a header that slipped past the checks, which is
/// a bug in the gateway: the client gets a 500 and the worker thread lives on.
pub trait Finish {
    fn finish(self, body: HttpBody) -> Result<S3Response, S3Error>;
}

impl Finish for http::response::Builder {
    fn finish(self, body: HttpBody) -> Result<S3Response, S3Error> {
        self.body(body)
            .map_err(|e| S3Error::Internal(format!("building a response: {e}")))
    }
}

/// A header value from text a client sent. Bytes outside ASCII go out as they came (S3 does the
/// same); control characters cannot be in a header, and are refused with 400.
pub fn header_value(text: &str, what: &str) -> Result<HeaderValue, S3Error> {
    HeaderValue::from_bytes(text.as_bytes())
        .map_err(|_| S3Error::InvalidArgument(format!("{what} is not a valid header value")))
}

/// The headers a GET's or HEAD's `response-*` parameters ask for.
pub fn response_overrides(query: &Query) -> Result<Vec<(HeaderName, HeaderValue)>, S3Error> {
    RESPONSE_OVERRIDES
        .iter()
        .filter_map(|(param, name)| Some((param, name, query.get(param)?)))
        .map(|(param, name, value)| Ok((name.clone(), header_value(value, param)?)))
        .collect()
}

/// A response with a status and no body.
pub fn empty_response(status: StatusCode) -> S3Response {
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    response
}

/// 200 with an XML document.
pub fn xml_response(xml: XmlWriter) -> S3Response {
    let mut response = Response::new(full(xml.finish()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

/// A JSON document (the admin API's answers).
pub fn json_response<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<S3Response, S3Error> {
    let body = serde_json::to_vec(value).map_err(|e| S3Error::Internal(e.to_string()))?;
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .finish(full(body))
}

/// An S3 error as S3 sends it: its status and headers, and (except to a HEAD) its XML document.
pub fn error_response(e: &S3Error, resource: &str, request_id: &str, is_head: bool) -> S3Response {
    let mut response = if is_head {
        empty_response(e.status())
    } else {
        let mut xml = XmlWriter::bare("Error");
        xml.elem("Code", e.code())
            .elem("Message", e.to_string())
            .elem("Resource", resource)
            .elem("RequestId", request_id);
        let mut response = xml_response(xml);
        *response.status_mut() = e.status();
        response
    };
    for (name, value) in e.headers() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Query {
        Query(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn all_six_overrides_are_read() {
        let pairs: Vec<(&str, &str)> = RESPONSE_OVERRIDES
            .iter()
            .map(|(param, _)| (*param, "v"))
            .collect();
        let headers = response_overrides(&query(&pairs)).unwrap();
        assert_eq!(headers.len(), 6);
        assert!(headers.iter().any(|(n, _)| n == EXPIRES));
    }

    #[test]
    fn control_characters_are_refused_and_utf8_kept() {
        let bad = response_overrides(&query(&[("response-content-type", "a\nb")]));
        assert!(matches!(bad, Err(S3Error::InvalidArgument(_))));
        let nul = response_overrides(&query(&[("response-expires", "a\0b")]));
        assert!(nul.is_err());
        let name = "attachment; filename=\"résumé.pdf\"";
        let good = response_overrides(&query(&[("response-content-disposition", name)])).unwrap();
        assert_eq!(good[0].1.as_bytes(), name.as_bytes());
    }

    #[test]
    fn a_builder_failure_is_an_error_not_a_panic() {
        let builder = Response::builder().header("x-bad", "a\nb");
        assert!(matches!(builder.finish(empty()), Err(S3Error::Internal(_))));
    }
}
