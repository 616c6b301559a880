//! The admin API's access keys, under `/_tessera/keys` (see `docs/admin-api.md`): create, list,
//! show, delete, and grant or take back permissions in buckets. Only the configured key may call
//! it (the router checks).

use crate::api::listing::iso8601;
use crate::api::{Gateway, S3Request};
use crate::ops::keys::new_key;
use crate::s3::error::S3Error;
use crate::s3::response::{json_response, S3Response};
use http::{Method, StatusCode};
use node_rpc::record::{BucketRecord, Grant, KeyRecord, Version};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Longest key name.
const MAX_NAME: usize = 128;
/// Request bodies are small JSON objects.
const BODY_LIMIT: u64 = 16 * 1024;

/// A key as the admin API shows it: never its secret, except once when created.
#[derive(Serialize)]
struct KeyInfo {
    id: String,
    name: String,
    created: String,
    create_bucket: bool,
    buckets: Vec<BucketGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Serialize)]
struct BucketGrant {
    bucket: String,
    read: bool,
    write: bool,
    owner: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    #[serde(default)]
    create_bucket: bool,
}

/// Permissions to grant (`allow`) or take back (`deny`): those set to true.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    read: bool,
    #[serde(default)]
    write: bool,
    #[serde(default)]
    owner: bool,
    #[serde(default)]
    create_bucket: bool,
}

pub async fn handle(gw: &Gateway, req: S3Request, path: &str) -> Result<S3Response, S3Error> {
    let segments: Vec<&str> = path.split('/').collect();
    match (req.parts.method.clone(), segments.as_slice()) {
        (Method::GET, ["keys"]) => {
            let buckets = bucket_names(gw).await?;
            let mut keys: Vec<KeyInfo> = gw
                .cluster
                .keys(true)
                .await?
                .values()
                .filter(|k| !k.deleted)
                .map(|k| info(k, &buckets))
                .collect();
            keys.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
            json_response(StatusCode::OK, &keys)
        }
        (Method::POST, ["keys"]) => {
            let new: NewKey = read_json(req).await?;
            let name = new.name.trim();
            if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
                return Err(S3Error::InvalidArgument(format!(
                    "a key name is 1 to {MAX_NAME} printable characters"
                )));
            }
            let (record, secret) = new_key(&gw.cluster.secrets, name, new.create_bucket);
            gw.cluster.put_key(&record).await?;
            let mut shown = info(&record, &HashMap::new());
            shown.secret = Some(secret);
            json_response(StatusCode::CREATED, &shown)
        }
        (Method::GET, ["keys", id]) => {
            let key = live_key(gw, id).await?;
            json_response(StatusCode::OK, &info(&key, &bucket_names(gw).await?))
        }
        (Method::DELETE, ["keys", id]) => {
            let mut key = live_key(gw, id).await?;
            key.deleted = true;
            key.buckets.clear();
            key.sealed_secret.clear();
            key.version = Version::now();
            gw.cluster.put_key(&key).await?;
            json_response(StatusCode::OK, &serde_json::json!({ "deleted": key.id }))
        }
        (Method::POST, ["keys", id, action @ ("allow" | "deny")]) => {
            let allow = *action == "allow";
            let mut key = live_key(gw, id).await?;
            let change: Change = read_json(req).await?;
            if change.create_bucket {
                key.create_bucket = allow;
            }
            let permissions = change.read || change.write || change.owner;
            match (&change.bucket, permissions) {
                (Some(name), _) => {
                    let bucket = gw.cluster.bucket(name).await?;
                    apply(&mut key, &bucket, &change, allow);
                }
                (None, true) => {
                    return Err(S3Error::InvalidArgument(
                        "read, write and owner need a bucket".into(),
                    ))
                }
                (None, false) if !change.create_bucket => {
                    return Err(S3Error::InvalidArgument(
                        "name a bucket and permissions, or create_bucket".into(),
                    ))
                }
                (None, false) => {}
            }
            key.version = Version::now();
            gw.cluster.put_key(&key).await?;
            json_response(StatusCode::OK, &info(&key, &bucket_names(gw).await?))
        }
        _ => Err(S3Error::MethodNotAllowed),
    }
}

/// Grants (`allow`) or takes back the permissions `change` names in `bucket`; a grant left
/// empty is dropped.
fn apply(key: &mut KeyRecord, bucket: &BucketRecord, change: &Change, allow: bool) {
    let id = hex::encode(bucket.id);
    let grant = key.buckets.entry(id.clone()).or_default();
    for (asked, permission) in [
        (change.read, &mut grant.read),
        (change.write, &mut grant.write),
        (change.owner, &mut grant.owner),
    ] {
        if asked {
            *permission = allow;
        }
    }
    if grant.is_empty() {
        key.buckets.remove(&id);
    }
}

async fn live_key(gw: &Gateway, id: &str) -> Result<KeyRecord, S3Error> {
    gw.cluster
        .keys(true)
        .await?
        .get(id)
        .filter(|k| !k.deleted)
        .cloned()
        .ok_or(S3Error::NoSuchAccessKey)
}

/// Live buckets' names by id (hex).
async fn bucket_names(gw: &Gateway) -> Result<HashMap<String, String>, S3Error> {
    Ok(gw
        .cluster
        .live_buckets()
        .await?
        .into_iter()
        .map(|b| (hex::encode(b.id), b.name))
        .collect())
}

/// The key as shown; grants in buckets that no longer exist are left out.
fn info(key: &KeyRecord, buckets: &HashMap<String, String>) -> KeyInfo {
    let mut grants: Vec<BucketGrant> = key
        .buckets
        .iter()
        .filter_map(|(id, grant): (&String, &Grant)| {
            Some(BucketGrant {
                bucket: buckets.get(id)?.clone(),
                read: grant.read,
                write: grant.write,
                owner: grant.owner,
            })
        })
        .collect();
    grants.sort_by(|a, b| a.bucket.cmp(&b.bucket));
    KeyInfo {
        id: key.id.clone(),
        name: key.name.clone(),
        created: iso8601(key.created),
        create_bucket: key.create_bucket,
        buckets: grants,
        secret: None,
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(req: S3Request) -> Result<T, S3Error> {
    let body = req.read_small_body(BODY_LIMIT).await?;
    serde_json::from_slice(&body)
        .map_err(|e| S3Error::InvalidArgument(format!("the request body is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_change_one_permission_at_a_time_and_empty_ones_go() {
        let bucket = BucketRecord {
            id: [5; 16],
            ..BucketRecord::default()
        };
        let mut key = KeyRecord::default();
        let change = |read, write, owner| Change {
            bucket: Some("b".into()),
            read,
            write,
            owner,
            create_bucket: false,
        };
        apply(&mut key, &bucket, &change(true, true, false), true);
        let grant = key.buckets[&hex::encode([5; 16])];
        assert!(grant.read && grant.write && !grant.owner);
        apply(&mut key, &bucket, &change(false, true, false), false);
        let grant = key.buckets[&hex::encode([5; 16])];
        assert!(grant.read && !grant.write);
        apply(&mut key, &bucket, &change(true, false, false), false);
        assert!(key.buckets.is_empty());
    }
}
