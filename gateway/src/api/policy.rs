//! Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus. The document is checked in full
//! (`s3::policy`) before it is stored, and kept as given, which GetBucketPolicy returns.

use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::s3::error::S3Error;
use crate::s3::policy::{Policy, MAX_POLICY_BYTES};
use crate::s3::response::{empty_response, xml_response, Finish, S3Response};
use crate::s3::xml::XmlWriter;
use http::{Response, StatusCode};

pub async fn put_policy(gw: &Gateway, bucket: &str, req: S3Request) -> Result<S3Response, S3Error> {
    let body = req
        .read_small_body(MAX_POLICY_BYTES as u64)
        .await
        .map_err(|e| match e {
            S3Error::EntityTooLarge => {
                S3Error::MalformedPolicy("Policy exceeds the maximum allowed document size.".into())
            }
            other => other,
        })?;
    Policy::parse(bucket, &body)?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| S3Error::MalformedPolicy("This policy contains invalid Json".into()))?;
    update_bucket(&gw.cluster, bucket, |b| b.policy = Some(text)).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// The bucket's policy as stored, or `NoSuchBucketPolicy`.
async fn stored(gw: &Gateway, bucket: &str) -> Result<String, S3Error> {
    gw.cluster
        .bucket(bucket)
        .await?
        .policy
        .ok_or(S3Error::NoSuchBucketPolicy)
}

pub async fn get_policy(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let policy = stored(gw, bucket).await?;
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .finish(node_rpc::body::full(policy))
}

pub async fn delete_policy(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    update_bucket(&gw.cluster, bucket, |b| b.policy = None).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn get_status(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let text = stored(gw, bucket).await?;
    let public = Policy::parse(bucket, text.as_bytes())?.is_public();
    let mut xml = XmlWriter::new("PolicyStatus");
    xml.elem("IsPublic", if public { "true" } else { "false" });
    Ok(xml_response(xml))
}
