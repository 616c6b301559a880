//! The node protocol: the JSON of every record and message gateways and nodes exchange (and nodes
//! keep on disk), the version ids inside them, the raw fragment upload's answer line, and request
//! signature checking.
//!
//! Input: one byte choosing the type, then the JSON. What decodes must encode, and decode again
//! to an equal value whose encoding is the same (a record written by one node is read by another).
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_rpc::auth::{
    BodyDigest, ClusterSecret, NonceMemory, VerifiedBody, BODY_HEADER, DATE_HEADER, NONCE_HEADER,
    SIGNATURE_HEADER,
};
use node_rpc::client::NodeHealth;
use node_rpc::protocol::*;
use node_rpc::record::*;
use node_rpc::ClusterConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decode, encode, decode: the two decodings encode the same.
fn round_trip<T: Serialize + DeserializeOwned>(json: &[u8]) -> Option<(T, T)> {
    let first: T = serde_json::from_slice(json).ok()?;
    let encoded = serde_json::to_vec(&first).expect("a decoded value encodes");
    let second: T = serde_json::from_slice(&encoded).expect("an encoded value decodes");
    assert_eq!(
        serde_json::to_vec(&second).unwrap(),
        encoded,
        "encoding is stable"
    );
    // Readers that cannot borrow the input (a stream) decode the same.
    let streamed: T = serde_json::from_reader(json).expect("decodes from a reader too");
    assert_eq!(serde_json::to_vec(&streamed).unwrap(), encoded);
    Some((first, second))
}

fn equal<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(json: &[u8]) {
    if let Some((first, second)) = round_trip::<T>(json) {
        assert_eq!(first, second);
    }
}

fn check_inline(parts: &[PartData]) {
    for part in parts {
        if let Some(inline) = &part.inline {
            if let Ok(bytes) = inline.decode() {
                assert_eq!(Inline::encode(&bytes).decode().unwrap(), bytes);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 24 {
        0 => {
            if let Some((record, _)) = round_trip::<ObjectRecord>(json) {
                check_inline(&record.parts);
                let _ = record.codec();
                let _ = record.fragment_files().count();
                let _ = (record.last_modified(), record.stamp(), record.version_ref());
            }
            equal::<ObjectRecord>(json)
        }
        1 => {
            if let Some((commit, _)) = round_trip::<CommitRequest>(json) {
                check_inline(&commit.record.parts);
            }
        }
        2 => {
            if let Some((lookup, _)) = round_trip::<Lookup>(json) {
                if let Some(record) = &lookup.record {
                    check_inline(&record.parts);
                }
            }
        }
        3 => equal::<PartData>(json),
        4 => equal::<BucketRecord>(json),
        5 => equal::<UploadRecord>(json),
        6 => equal::<PartRecord>(json),
        7 => equal::<ListEntry>(json),
        8 => drop(round_trip::<ListResponse>(json)),
        9 => drop(round_trip::<ListRequest>(json)),
        10 => drop(round_trip::<VersionListRequest>(json)),
        11 => drop(round_trip::<PurgeRequest>(json)),
        12 => drop(round_trip::<UndoRequest>(json)),
        13 => drop(round_trip::<ClaimRequest>(json)),
        14 => equal::<ClaimAnswer>(json),
        15 => drop(round_trip::<UploadRequest>(json)),
        16 => drop(round_trip::<PartRequest>(json)),
        17 => equal::<ShardDigest>(json),
        18 => equal::<ScrubStatus>(json),
        19 => drop(round_trip::<NodeHealth>(json)),
        20 => drop(round_trip::<ClusterConfig>(json)),
        21 => equal::<std::collections::BTreeMap<u32, ShardDigest>>(json),
        22 => {
            // The raw fragment upload's answer line, and what a node sends.
            if let Some((status, message)) = parse_raw_upload_answer(json) {
                let line = raw_upload_answer(status, &message);
                assert_eq!(
                    parse_raw_upload_answer(line.as_bytes()),
                    Some((status, message))
                );
            }
            if let Ok(text) = std::str::from_utf8(json) {
                let line = raw_upload_answer(http::StatusCode::OK, text);
                assert_eq!(
                    parse_raw_upload_answer(line.as_bytes()),
                    Some((http::StatusCode::OK, text.to_string()))
                );
            }
        }
        _ => {
            // Version ids (S3 versionId, version markers) and request signatures.
            let Ok(text) = std::str::from_utf8(json) else {
                return;
            };
            if let Ok(version) = text.parse::<Version>() {
                assert_eq!(version.to_string().parse::<Version>(), Ok(version));
            }
            if let Ok(version) = text.parse::<VersionRef>() {
                assert_eq!(version.to_string().parse::<VersionRef>(), Ok(version));
            }
            assert!(is_fragment_id(&fragment_id(&[json])));
            // Arbitrary header values never pass; a real signature passes once.
            let secret = ClusterSecret::new("secret".into());
            let nonces = NonceMemory::new(1024);
            let mut fields = text.split('\n');
            let forged: Vec<(&str, &str)> =
                [DATE_HEADER, NONCE_HEADER, BODY_HEADER, SIGNATURE_HEADER]
                    .into_iter()
                    .map(|name| (name, fields.next().unwrap_or("")))
                    .collect();
            assert!(secret
                .verify("GET", "/v1/x", |n| lookup(&forged, n), &nonces)
                .is_err());
            let call = secret.sign("PUT", text, BodyDigest::of(json));
            let signed: Vec<(&'static str, &str)> =
                call.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let verified = secret
                .verify("PUT", text, |n| lookup(&signed, n), &nonces)
                .expect("a fresh signature verifies");
            assert!(matches!(verified, VerifiedBody::Hashed(d) if d.matches(json)));
            assert!(secret
                .verify("PUT", text, |n| lookup(&signed, n), &nonces)
                .is_err());
        }
    }
});

/// A header of a call by name, as a node's request lookup gives it.
fn lookup<'a>(headers: &[(&'static str, &'a str)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}
