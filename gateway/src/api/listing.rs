//! ListObjects (V1 and V2), and the pieces of listing XML that the other listings (versions,
//! uploads, parts) share: page sizes, continuation tokens, key encoding, owners and dates.

use crate::api::access::owner_id;
use crate::api::Gateway;
use crate::ops::list::{list, ListQuery};
use crate::s3::error::S3Error;
use crate::s3::http::Query;
use crate::s3::response::{xml_response, S3Response};
use crate::s3::xml::XmlWriter;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::DateTime;
use node_rpc::record::Version;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

const MAX_KEYS: usize = 1000;

/// `encoding-type=url` encodes all but unreserved characters and `/`, which every client decodes.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// ListObjects (V1, with `marker`) and ListObjectsV2 (`list-type=2`).
pub async fn list_objects(gw: &Gateway, name: &str, query: &Query) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(name).await?;
    let v2 = query.get("list-type") == Some("2");
    let max_keys = max_keys(query)?;
    let url_encode = url_encoding(query)?;
    let prefix = query.get("prefix").unwrap_or("").to_string();
    let delimiter = query
        .get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let token = query.get("continuation-token");
    let after = if v2 {
        match token {
            Some(t) => Some(decode_token(t)?),
            None => query.get("start-after").map(str::to_string),
        }
    } else {
        query.get("marker").map(str::to_string)
    }
    .filter(|a| !a.is_empty());
    let listing = list(
        &gw.cluster,
        &bucket.id,
        &ListQuery {
            prefix: prefix.clone(),
            delimiter: delimiter.clone(),
            after,
            max_keys,
        },
    )
    .await?;
    let enc = |s: &str| encode_name(s, url_encode);
    let mut xml = XmlWriter::new("ListBucketResult");
    xml.elem("Name", &bucket.name).elem("Prefix", enc(&prefix));
    if let Some(d) = &delimiter {
        xml.elem("Delimiter", enc(d));
    }
    xml.elem("MaxKeys", max_keys.to_string());
    if url_encode {
        xml.elem("EncodingType", "url");
    }
    xml.elem("IsTruncated", listing.next_after.is_some().to_string());
    if v2 {
        xml.elem(
            "KeyCount",
            (listing.keys.len() + listing.prefixes.len()).to_string(),
        );
        if let Some(t) = token {
            xml.elem("ContinuationToken", t);
        }
        if let Some(s) = query.get("start-after") {
            xml.elem("StartAfter", enc(s));
        }
        if let Some(next) = &listing.next_after {
            xml.elem("NextContinuationToken", URL_SAFE_NO_PAD.encode(next));
        }
    } else {
        xml.elem("Marker", enc(query.get("marker").unwrap_or("")));
        if let (Some(next), Some(_)) = (&listing.next_after, &delimiter) {
            xml.elem("NextMarker", enc(next));
        }
    }
    let fetch_owner = !v2 || query.get("fetch-owner") == Some("true");
    for entry in &listing.keys {
        xml.open("Contents")
            .elem("Key", enc(&entry.key))
            .elem("LastModified", iso8601(entry.last_modified()))
            .elem("ETag", format!("\"{}\"", entry.etag))
            .elem("Size", entry.size.to_string());
        if fetch_owner {
            owner(
                &mut xml,
                entry.owner.as_deref().unwrap_or(owner_id(&bucket)),
            );
        }
        xml.elem("StorageClass", "STANDARD").close();
    }
    for prefix in &listing.prefixes {
        xml.open("CommonPrefixes")
            .elem("Prefix", enc(prefix))
            .close();
    }
    Ok(xml_response(xml))
}

/// `max-keys`, at most 1000 (the default).
pub fn max_keys(query: &Query) -> Result<usize, S3Error> {
    match query.get("max-keys") {
        Some(v) => Ok(v
            .parse::<usize>()
            .map_err(|_| {
                S3Error::InvalidArgument("max-keys must be a non-negative integer".into())
            })?
            .min(MAX_KEYS)),
        None => Ok(MAX_KEYS),
    }
}

/// Whether a listing names keys URL-encoded (`encoding-type=url`).
pub fn url_encoding(query: &Query) -> Result<bool, S3Error> {
    match query.get("encoding-type") {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(_) => Err(S3Error::InvalidArgument(
            "Invalid Encoding Method specified in Request".into(),
        )),
    }
}

pub fn encode_name(name: &str, url_encode: bool) -> String {
    if url_encode {
        utf8_percent_encode(name, URL_ENCODE).to_string()
    } else {
        name.to_string()
    }
}

/// The `<Owner>` element of listings, naming a canonical user id.
pub fn owner(xml: &mut XmlWriter, id: &str) {
    principal(xml, "Owner", id);
}

/// An `<Owner>` or `<Initiator>`.
pub fn principal(xml: &mut XmlWriter, element: &'static str, id: &str) {
    xml.open(element)
        .elem("ID", id)
        .elem("DisplayName", id)
        .close();
}

pub fn decode_token(token: &str) -> Result<String, S3Error> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            S3Error::InvalidArgument("The continuation token provided is incorrect".into())
        })
}

pub fn iso8601(version: Version) -> String {
    DateTime::from_timestamp_millis(version.unix_millis())
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn tokens_round_trip() {
        let key = "a/b c+é";
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode(key)).unwrap(), key);
        assert!(decode_token("!!!").is_err());
    }
}
