//! What a handler gets: the request head, its decoded query and its authenticated body, with
//! the body readers every handler shares.

use crate::api::access::Caller;
use crate::s3::auth::Authenticated;
use crate::s3::checksum::{Algorithm, Digests, Expected};
use crate::s3::error::S3Error;
use crate::s3::http::{header, version_id, Query};
use crate::s3::payload::PayloadReader;
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use hyper::body::Incoming;
use node_rpc::record::VersionRef;
use std::time::Duration;

/// What a handler gets: the request head, its decoded query and its authenticated body.
pub struct S3Request {
    pub parts: Parts,
    pub query: Query,
    pub body: Incoming,
    pub auth: Authenticated,
    /// Who sent it.
    pub caller: Caller,
    /// How long the body may stop arriving (`Limits::stall_timeout`).
    pub body_stall: Duration,
}

impl S3Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.parts, name)
    }

    /// The version a request names with `versionId`, if any.
    pub fn version_param(&self) -> Result<Option<VersionRef>, S3Error> {
        self.query.get("versionId").map(version_id).transpose()
    }

    /// The content length the client declared (the decoded length for `aws-chunked` bodies).
    pub fn content_length(&self) -> Result<u64, S3Error> {
        let name = if self.header("x-amz-decoded-content-length").is_some() {
            "x-amz-decoded-content-length"
        } else {
            "content-length"
        };
        match self.header(name) {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| S3Error::InvalidArgument(format!("bad {name}"))),
            None if self
                .parts
                .headers
                .contains_key(http::header::TRANSFER_ENCODING) =>
            {
                Err(S3Error::MissingContentLength)
            }
            None => Ok(0),
        }
    }

    /// What the client claimed about the body: Content-MD5 and at most one S3 checksum.
    pub fn expected_digests(&self) -> Result<Expected, S3Error> {
        let checksum = if let Some(trailer) = self.header("x-amz-trailer") {
            let algorithm = Algorithm::from_header(trailer.trim())
                .ok_or_else(|| S3Error::InvalidRequest(format!("unsupported trailer {trailer}")))?;
            Some((algorithm, None))
        } else {
            Algorithm::ALL.into_iter().find_map(|a| {
                self.header(&a.header())
                    .map(|v| (a, Some(v.trim().to_string())))
            })
        };
        Expected::new(self.header("content-md5"), checksum)
    }

    /// The body, authenticated and decoded; `len` is the content length the client declared.
    pub fn payload(self, len: u64) -> PayloadReader {
        PayloadReader::new(self.body, self.auth, len, self.body_stall)
    }

    /// Reads a small body (XML) whole, checking its length, signature and digests.
    pub async fn read_small_body(self, limit: u64) -> Result<Bytes, S3Error> {
        let expected = self.expected_digests()?;
        self.read_small_body_against(limit, expected).await
    }

    /// Reads a small body whole, checking its length, signature and the digests given (for
    /// requests whose `x-amz-checksum-*` headers are about something else than the body).
    pub async fn read_small_body_against(
        self,
        limit: u64,
        expected: Expected,
    ) -> Result<Bytes, S3Error> {
        let len = self.content_length()?;
        if len > limit {
            return Err(S3Error::EntityTooLarge);
        }
        let mut reader = self.payload(len);
        let mut digests = Digests::new(expected.checksum.as_ref().map(|c| c.0));
        let mut out = BytesMut::new();
        while let Some(chunk) = reader.next().await? {
            digests.update(&chunk).await;
            out.extend_from_slice(&chunk);
        }
        let trailer = expected
            .checksum
            .as_ref()
            .and_then(|(a, _)| reader.trailer(&a.header()));
        digests.verify(&expected, trailer).await?;
        Ok(out.freeze())
    }

    /// Operations for which S3 requires an integrity check on the body: Content-MD5 or a checksum.
    pub fn require_integrity(&self) -> Result<(), S3Error> {
        let has_checksum = self.header("content-md5").is_some()
            || self.header("x-amz-trailer").is_some()
            || crate::s3::checksum::Algorithm::ALL
                .into_iter()
                .any(|a| self.header(&a.header()).is_some());
        if has_checksum {
            Ok(())
        } else {
            Err(S3Error::InvalidRequest(
                "Missing required header for this request: Content-MD5".into(),
            ))
        }
    }
}
