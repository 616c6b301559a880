//! Server-side encryption in S3's terms: SSE-S3 (`x-amz-server-side-encryption: AES256`, or the
//! bucket's default from PutBucketEncryption) and SSE-C (the client's own key in the
//! `x-amz-server-side-encryption-customer-*` headers), turned into the keys `ops::encryption`
//! encrypts with, and the headers that answer them. SSE-KMS is not implemented (501).

use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::ops::encryption::{Sse, WrappingKey, WrongKey};
use crate::s3::error::S3Error;
use crate::s3::response::{empty_response, xml_response, S3Response};
use crate::s3::xml::{parse_tree, XmlWriter};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::{Response, StatusCode};
use md5::{Digest, Md5};
use node_rpc::body::empty;
use node_rpc::record::{BucketEncryption, BucketRecord, Encryption, ObjectRecord};

/// The prefix of the SSE-C headers of the object a request reads or writes.
pub const SSE_C: &str = "x-amz-server-side-encryption-customer-";
/// The prefix of the SSE-C headers of a copy's source.
pub const COPY_SOURCE_SSE_C: &str = "x-amz-copy-source-server-side-encryption-customer-";

/// The one algorithm of SSE-S3 and SSE-C.
const AES256: &str = "AES256";

/// A client's SSE-C key, checked against the MD5 it sent with it.
struct CustomerKey {
    key: [u8; 32],
    /// Base64, as the client sent it and S3 returns it.
    md5: String,
}

/// The request has one of the SSE-C headers starting with `prefix`. Looked for among the
/// request's headers, whose names are lowercase, rather than by the three names: building them
/// took every GET and PUT three allocations.
pub fn has_customer_key(headers: &http::HeaderMap, prefix: &str) -> bool {
    headers.iter().any(|(name, value)| {
        let rest = name.as_str().strip_prefix(prefix);
        rest.is_some_and(|rest| ["algorithm", "key", "key-md5"].contains(&rest))
            && value.to_str().is_ok()
    })
}

/// The SSE-C key in the headers starting with `prefix`, if the request has any of them.
fn customer_key(
    gw: &Gateway,
    req: &S3Request,
    prefix: &str,
) -> Result<Option<CustomerKey>, S3Error> {
    if !has_customer_key(&req.parts.headers, prefix) {
        return Ok(None);
    }
    let header = |name: &str| req.header(&format!("{prefix}{name}"));
    let (algorithm, key, md5) = (header("algorithm"), header("key"), header("key-MD5"));
    if !gw.serves_tls() && !gw.config.sse_c_without_tls {
        return Err(S3Error::InvalidRequest(
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.".into(),
        ));
    }
    let missing = |what: &str| {
        S3Error::InvalidArgument(format!(
            "Requests specifying Server Side Encryption with Customer provided keys must provide {what}."
        ))
    };
    match algorithm.map(str::trim) {
        None => return Err(missing("a valid encryption algorithm")),
        Some(AES256) => {}
        Some(_) => return Err(S3Error::InvalidEncryptionAlgorithm),
    }
    let key = key.ok_or_else(|| missing("an appropriate secret key"))?;
    let key: [u8; 32] = BASE64
        .decode(key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| {
            S3Error::InvalidArgument(
                "The secret key was invalid for the specified algorithm.".into(),
            )
        })?;
    let md5 = md5
        .ok_or_else(|| missing("the client calculated MD5 of the secret key"))?
        .trim();
    if BASE64.encode(Md5::digest(key)) != md5 {
        return Err(S3Error::InvalidArgument(
            "The calculated MD5 hash of the key did not match the hash that was provided.".into(),
        ));
    }
    Ok(Some(CustomerKey {
        key,
        md5: md5.to_string(),
    }))
}

/// The keys a new object (or upload) is encrypted with: the client's SSE-C key, SSE-S3 when the
/// request or else the bucket asks for it, or none.
pub fn for_write(
    gw: &Gateway,
    req: &S3Request,
    bucket: &BucketRecord,
) -> Result<Option<Sse>, S3Error> {
    let customer = customer_key(gw, req, SSE_C)?;
    match (customer, req.header("x-amz-server-side-encryption")) {
        (Some(_), Some(_)) => Err(S3Error::InvalidArgument(
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified".into(),
        )),
        (Some(c), None) => Ok(Some(Sse::new(
            Encryption::Customer { key_md5: c.md5 },
            WrappingKey::new(c.key),
        ))),
        (None, Some(algorithm)) => {
            check_algorithm(algorithm.trim())?;
            sse_s3(gw).map(Some)
        }
        (None, None) => bucket_default(gw, bucket),
    }
}

/// The keys of a write that asks for no encryption: SSE-S3 if the bucket has it by default.
pub fn bucket_default(gw: &Gateway, bucket: &BucketRecord) -> Result<Option<Sse>, S3Error> {
    match bucket.encryption {
        Some(_) => sse_s3(gw).map(Some),
        None => Ok(None),
    }
}

/// An SSE algorithm named by a request: AES256 is SSE-S3, the KMS ones are not implemented.
fn check_algorithm(algorithm: &str) -> Result<(), S3Error> {
    match algorithm {
        AES256 => Ok(()),
        "aws:kms" | "aws:kms:dsse" => Err(S3Error::NotImplemented("SSE-KMS")),
        _ => Err(S3Error::InvalidArgument(
            "The encryption method specified is not supported".into(),
        )),
    }
}

fn master_key(gw: &Gateway) -> Result<&WrappingKey, S3Error> {
    gw.master_key.as_ref().ok_or(S3Error::NotImplemented(
        "SSE-S3 on a gateway without a master key (sse_master_key)",
    ))
}

fn sse_s3(gw: &Gateway) -> Result<Sse, S3Error> {
    let key = master_key(gw)?;
    Ok(Sse::new(
        Encryption::S3 {
            master_key_id: key.id(),
        },
        key.clone(),
    ))
}

/// The keys to read an object (or an upload's parts) encrypted as `encryption` says, from the
/// SSE-C headers starting with `prefix` or the master key; the errors are S3's.
pub fn for_read(
    gw: &Gateway,
    req: &S3Request,
    encryption: Option<&Encryption>,
    prefix: &str,
) -> Result<Option<Sse>, S3Error> {
    let not_applicable = || {
        S3Error::InvalidRequest(
            "The encryption parameters are not applicable to this object.".into(),
        )
    };
    match (encryption, customer_key(gw, req, prefix)?) {
        (None, None) => Ok(None),
        (None | Some(Encryption::S3 { .. }), Some(_)) => Err(not_applicable()),
        (Some(Encryption::Customer { .. }), None) => Err(S3Error::InvalidRequest(
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.".into(),
        )),
        (Some(stored @ Encryption::Customer { key_md5 }), Some(given)) => {
            if *key_md5 != given.md5 {
                return Err(S3Error::AccessDenied(
                    "the SSE-C key is not the one the object was written with",
                ));
            }
            Ok(Some(Sse::new(stored.clone(), WrappingKey::new(given.key))))
        }
        (Some(stored @ Encryption::S3 { master_key_id }), None) => {
            let key = master_key(gw)?;
            if key.id() != *master_key_id {
                return Err(S3Error::Internal(format!(
                    "the object was encrypted with SSE-S3 master key {master_key_id}, not this gateway's {}",
                    key.id()
                )));
            }
            Ok(Some(Sse::new(stored.clone(), key.clone())))
        }
    }
}

/// The keys to read `record` with (see `for_read`), checked against its first part: a wrong key
/// is refused before any response starts.
pub fn for_object(
    gw: &Gateway,
    req: &S3Request,
    record: &ObjectRecord,
    prefix: &str,
) -> Result<Option<Sse>, S3Error> {
    let sse = for_read(gw, req, record.encryption.as_ref(), prefix)?;
    if let (Some(sse), Some(part)) = (&sse, record.parts.first()) {
        sse.open(part).map_err(|WrongKey| {
            S3Error::AccessDenied("the SSE-C key is not the one the object was written with")
        })?;
    }
    Ok(sse)
}

/// The headers that tell a client how an object is encrypted.
pub fn response_headers(encryption: Option<&Encryption>) -> Vec<(&'static str, String)> {
    match encryption {
        None => Vec::new(),
        Some(Encryption::S3 { .. }) => vec![("x-amz-server-side-encryption", AES256.into())],
        Some(Encryption::Customer { key_md5 }) => vec![
            (
                "x-amz-server-side-encryption-customer-algorithm",
                AES256.into(),
            ),
            (
                "x-amz-server-side-encryption-customer-key-MD5",
                key_md5.clone(),
            ),
        ],
    }
}

/// Adds `response_headers` to a response being built.
pub fn with_headers(
    mut response: http::response::Builder,
    encryption: Option<&Encryption>,
) -> http::response::Builder {
    for (name, value) in response_headers(encryption) {
        response = response.header(name, value);
    }
    response
}

/// Adds `response_headers` to a finished response.
pub fn insert_headers(headers: &mut http::HeaderMap, encryption: Option<&Encryption>) {
    for (name, value) in response_headers(encryption) {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
}

pub async fn put_bucket_encryption(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    req.require_integrity()?;
    let setting = parse(&req.read_small_body(16 * 1024).await?)?;
    master_key(gw)?;
    update_bucket(&gw.cluster, bucket, |b| b.encryption = Some(setting)).await?;
    Ok(Response::new(empty()))
}

pub async fn get_bucket_encryption(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let setting = bucket
        .encryption
        .ok_or(S3Error::NoSuchEncryptionConfiguration)?;
    let mut xml = XmlWriter::new("ServerSideEncryptionConfiguration");
    xml.open("Rule")
        .open("ApplyServerSideEncryptionByDefault")
        .elem("SSEAlgorithm", AES256)
        .close()
        .elem("BucketKeyEnabled", setting.bucket_key_enabled.to_string())
        .close();
    Ok(xml_response(xml))
}

pub async fn delete_bucket_encryption(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    update_bucket(&gw.cluster, bucket, |b| b.encryption = None).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// A `ServerSideEncryptionConfiguration`: one rule, whose default is SSE-S3.
pub fn parse(body: &[u8]) -> Result<BucketEncryption, S3Error> {
    let root = parse_tree(body, "ServerSideEncryptionConfiguration")?;
    let [rule] = &root.children[..] else {
        return Err(S3Error::MalformedXml);
    };
    if rule.name != "Rule" {
        return Err(S3Error::MalformedXml);
    }
    let mut setting = BucketEncryption::default();
    let mut algorithm = None;
    for part in &rule.children {
        match part.name.as_str() {
            "ApplyServerSideEncryptionByDefault" => {
                for field in &part.children {
                    match field.name.as_str() {
                        "SSEAlgorithm" => algorithm = Some(field.text.trim()),
                        "KMSMasterKeyID" => {
                            return Err(S3Error::InvalidArgument(
                                "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse".into(),
                            ))
                        }
                        _ => return Err(S3Error::MalformedXml),
                    }
                }
            }
            "BucketKeyEnabled" => {
                setting.bucket_key_enabled = match part.text.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(S3Error::MalformedXml),
                }
            }
            "BlockedEncryptionTypes" => {
                return Err(S3Error::NotImplemented("Blocking encryption types"))
            }
            _ => return Err(S3Error::MalformedXml),
        }
    }
    match algorithm {
        Some(algorithm) if algorithm.starts_with("aws:kms") => check_algorithm(algorithm)?,
        Some(AES256) => {}
        _ => return Err(S3Error::MalformedXml),
    }
    Ok(setting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rule: &str) -> Vec<u8> {
        format!("<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule>{rule}</Rule></ServerSideEncryptionConfiguration>").into_bytes()
    }

    #[test]
    fn customer_keys_are_seen_by_any_of_their_headers_in_any_case() {
        let headers = |names: &[&str]| {
            let mut map = http::HeaderMap::new();
            for name in names {
                map.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    "v".parse().unwrap(),
                );
            }
            map
        };
        for name in ["algorithm", "Key", "key-MD5"] {
            let sse_c = headers(&[
                "host",
                &format!("X-Amz-Server-Side-Encryption-Customer-{name}"),
            ]);
            assert!(has_customer_key(&sse_c, SSE_C), "{name}");
            assert!(!has_customer_key(&sse_c, COPY_SOURCE_SSE_C), "{name}");
            let source = headers(&[&format!(
                "x-amz-copy-source-server-side-encryption-customer-{name}"
            )]);
            assert!(has_customer_key(&source, COPY_SOURCE_SSE_C), "{name}");
            assert!(!has_customer_key(&source, SSE_C), "{name}");
        }
        for other in [
            "x-amz-server-side-encryption",
            "x-amz-server-side-encryption-customer-keys",
        ] {
            assert!(!has_customer_key(&headers(&[other]), SSE_C), "{other}");
        }
    }

    #[test]
    fn a_default_of_sse_s3_is_taken() {
        let aes = "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault>";
        assert_eq!(parse(&config(aes)).unwrap(), BucketEncryption::default());
        let with_key = format!("{aes}<BucketKeyEnabled>true</BucketKeyEnabled>");
        assert!(parse(&config(&with_key)).unwrap().bucket_key_enabled);
    }

    #[test]
    fn what_is_not_sse_s3_is_refused() {
        let kms = "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm></ApplyServerSideEncryptionByDefault>";
        assert!(matches!(
            parse(&config(kms)),
            Err(S3Error::NotImplemented(_))
        ));
        for bad in [
            "",
            "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>DES</SSEAlgorithm></ApplyServerSideEncryptionByDefault>",
            "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm><Other/></ApplyServerSideEncryptionByDefault>",
            "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault><BucketKeyEnabled>maybe</BucketKeyEnabled>",
        ] {
            assert!(matches!(parse(&config(bad)), Err(S3Error::MalformedXml)), "{bad}");
        }
        let blocked = "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault><BlockedEncryptionTypes><EncryptionType>SSE-C</EncryptionType></BlockedEncryptionTypes>";
        assert!(matches!(
            parse(&config(blocked)),
            Err(S3Error::NotImplemented(_))
        ));
        assert!(parse(b"<ServerSideEncryptionConfiguration/>").is_err());
    }

    #[test]
    fn response_headers_name_the_encryption() {
        assert!(response_headers(None).is_empty());
        let s3 = Encryption::S3 {
            master_key_id: "k".into(),
        };
        assert_eq!(
            response_headers(Some(&s3)),
            [("x-amz-server-side-encryption", "AES256".to_string())]
        );
        let customer = Encryption::Customer {
            key_md5: "m".into(),
        };
        assert_eq!(response_headers(Some(&customer)).len(), 2);
    }
}
