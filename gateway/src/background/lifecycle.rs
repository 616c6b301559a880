//! The lifecycle worker: applies each bucket's lifecycle rules (expiration of current versions,
//! of noncurrent versions and of delete markers left alone, and aborting incomplete multipart
//! uploads) and aborts uploads abandoned for `abandoned_upload_days`.
//!
//! Every gateway runs it; what it does is idempotent (an expired key is deleted once: it then no
//! longer lists), so several gateways only repeat each other's work.

use crate::ops::cluster::Cluster;
use crate::ops::delete::remove;
use crate::ops::error::OpError;
use crate::ops::list::{list, list_versions, ListQuery, VersionQuery};
use crate::ops::lookup::find_version;
use crate::ops::upload::{abort_upload, all_uploads};
use node_rpc::protocol::unix_now;
use node_rpc::record::{BucketRecord, LifecycleRule, ListEntry, Version, VersionRef};
use std::sync::Arc;
use std::time::Duration;

/// Keys looked at per listing page while expiring.
const PAGE: usize = 1000;

/// The lifecycle worker's cluster and settings (see `GatewayConfig`).
pub struct Lifecycle {
    pub cluster: Arc<Cluster>,
    /// Seconds in a lifecycle day (`lifecycle_day_secs`).
    pub day_secs: u64,
    /// `abandoned_upload_days`; 0: never.
    pub abandoned_upload_days: u32,
}

/// Applies every bucket's rules, and the abandoned-upload rule, every 1/24 of a lifecycle day.
pub async fn run(lifecycle: Lifecycle) {
    let day = lifecycle.day_secs.max(1);
    let period = Duration::from_secs((day / 24).max(1));
    loop {
        tokio::time::sleep(period).await;
        if let Err(e) = lifecycle.apply_all().await {
            tracing::warn!(error = ?e, "lifecycle pass failed");
        }
    }
}

impl Lifecycle {
    async fn apply_all(&self) -> Result<(), OpError> {
        let buckets: Vec<BucketRecord> = self
            .cluster
            .buckets(false)
            .await?
            .values()
            .filter(|b| !b.deleted)
            .cloned()
            .collect();
        for bucket in buckets {
            if let Err(e) = self.apply(&bucket).await {
                tracing::warn!(bucket = %bucket.name, error = ?e, "lifecycle rules not applied");
            }
        }
        Ok(())
    }

    /// Seconds in `days` lifecycle days.
    fn span(&self, days: u32) -> u64 {
        u64::from(days).saturating_mul(self.day_secs)
    }

    async fn apply(&self, bucket: &BucketRecord) -> Result<(), OpError> {
        let now = unix_now();
        let rules: Vec<&LifecycleRule> = bucket
            .lifecycle
            .iter()
            .flatten()
            .filter(|r| r.enabled)
            .collect();
        for rule in &rules {
            self.expire(bucket, rule, now).await?;
            let version_actions =
                rule.noncurrent_days.is_some() || rule.expired_object_delete_marker;
            if bucket.versioning.is_some() && version_actions {
                self.expire_versions(bucket, rule, now).await?;
            }
        }
        // Each upload is aborted by the strictest rule that covers it.
        let mut abort_rules: Vec<(&str, u64)> = rules
            .iter()
            .filter_map(|r| Some((r.prefix.as_str(), self.span(r.abort_upload_days?))))
            .collect();
        if self.abandoned_upload_days > 0 {
            abort_rules.push(("", self.span(self.abandoned_upload_days)));
        }
        if abort_rules.is_empty() {
            return Ok(());
        }
        for upload in all_uploads(&self.cluster, bucket).await? {
            let age = now.saturating_sub(secs(upload.version));
            let due = abort_rules
                .iter()
                .any(|(prefix, after)| upload.key.starts_with(prefix) && age >= *after);
            if due {
                abort_upload(&self.cluster, bucket, &upload.key, &upload.upload_id).await?;
                tracing::info!(bucket = %bucket.name, key = %upload.key, upload = %upload.upload_id, "lifecycle aborted an upload");
            }
        }
        Ok(())
    }

    /// Deletes (as DeleteObject without a version id would) the current versions the rule expires.
    async fn expire(
        &self,
        bucket: &BucketRecord,
        rule: &LifecycleRule,
        now: u64,
    ) -> Result<(), OpError> {
        let date_passed = rule.expiration_date.is_some_and(|d| now as i64 >= d);
        let max_age = rule.expiration_days.map(|d| self.span(d));
        if !date_passed && max_age.is_none() {
            return Ok(());
        }
        let mut after = None;
        loop {
            let query = ListQuery {
                prefix: rule.prefix.clone(),
                delimiter: None,
                after: after.clone(),
                max_keys: PAGE,
            };
            let page = list(&self.cluster, &bucket.id, &query).await?;
            for entry in &page.keys {
                let age = now.saturating_sub(secs(entry.last_modified()));
                let due = date_passed || max_age.is_some_and(|max| age >= max);
                if due
                    && rule.covers(&entry.key, entry.size)
                    && self.tags_match(bucket, rule, &entry.key, None).await?
                {
                    remove(&self.cluster, bucket, &entry.key, None, false).await?;
                    tracing::info!(bucket = %bucket.name, key = %entry.key, "lifecycle expired a key");
                }
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Whether the object (a version of it) has the tags the rule's filter names.
    async fn tags_match(
        &self,
        bucket: &BucketRecord,
        rule: &LifecycleRule,
        key: &str,
        which: Option<VersionRef>,
    ) -> Result<bool, OpError> {
        if rule.tags.is_empty() {
            return Ok(true);
        }
        match find_version(&self.cluster, bucket, key, which, false).await {
            Ok(found) => Ok(rule.tags_match(&found.record.tags)),
            Err(OpError::NoSuchKey | OpError::NoSuchVersion) => Ok(false),
            Err(OpError::DeleteMarker { .. } | OpError::DeleteMarkerVersion { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// In a bucket with versioning: purges the noncurrent versions the rule expires, and the
    /// delete markers left as their key's only version (ExpiredObjectDeleteMarker). Versions go
    /// as DeleteObject with their version id, so Object Lock keeps the locked ones.
    async fn expire_versions(
        &self,
        bucket: &BucketRecord,
        rule: &LifecycleRule,
        now: u64,
    ) -> Result<(), OpError> {
        let mut key = KeyVersions::default();
        let mut marker: Option<(String, Option<VersionRef>)> = None;
        loop {
            let query = VersionQuery {
                prefix: rule.prefix.clone(),
                delimiter: None,
                key_marker: marker.as_ref().map(|(k, _)| k.clone()),
                version_marker: marker.as_ref().and_then(|(_, v)| *v),
                max_keys: PAGE,
                hide_markers: false,
            };
            let page = list_versions(&self.cluster, &bucket.id, &query).await?;
            for (entry, latest) in &page.versions {
                if *latest {
                    self.remove_lone_marker(bucket, &key).await?;
                    key = KeyVersions::starting(entry, rule);
                    continue;
                }
                key.lone_marker = None;
                key.noncurrent += 1;
                let noncurrent_for = now.saturating_sub(secs(key.successor_modified));
                key.successor_modified = entry.last_modified();
                let due = rule
                    .noncurrent_days
                    .is_some_and(|days| noncurrent_for >= self.span(days))
                    && rule
                        .newer_noncurrent_versions
                        .is_none_or(|keep| key.noncurrent > keep);
                let which = Some(entry.version_ref());
                if due
                    && rule.covers(&entry.key, entry.size)
                    && self.tags_match(bucket, rule, &entry.key, which).await?
                {
                    self.purge(
                        bucket,
                        &entry.key,
                        entry.version_ref(),
                        "a noncurrent version",
                    )
                    .await?;
                }
            }
            match page.next {
                Some(next) => marker = Some(next),
                None => return self.remove_lone_marker(bucket, &key).await,
            }
        }
    }

    async fn remove_lone_marker(
        &self,
        bucket: &BucketRecord,
        key: &KeyVersions,
    ) -> Result<(), OpError> {
        match &key.lone_marker {
            Some((name, version)) => self.purge(bucket, name, *version, "a delete marker").await,
            None => Ok(()),
        }
    }

    /// Purges one version; one that Object Lock protects stays, and the pass goes on.
    async fn purge(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version: VersionRef,
        what: &str,
    ) -> Result<(), OpError> {
        match remove(&self.cluster, bucket, key, Some(version), false).await {
            Ok(_) => {
                tracing::info!(bucket = %bucket.name, key, %version, "lifecycle purged {what}");
                Ok(())
            }
            Err(OpError::Locked) => {
                tracing::debug!(bucket = %bucket.name, key, %version, "lifecycle kept a locked version");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// What a version listing has shown of the key it is in, newest version first.
#[derive(Default)]
struct KeyVersions {
    /// Last-Modified of the version listed last: when the next (older) one became noncurrent.
    successor_modified: Version,
    /// Noncurrent versions listed so far.
    noncurrent: u32,
    /// The key's current version when it is a delete marker the rule removes once it is alone.
    lone_marker: Option<(String, VersionRef)>,
}

impl KeyVersions {
    /// The state after a key's current version.
    fn starting(current: &ListEntry, rule: &LifecycleRule) -> KeyVersions {
        let removable = rule.expired_object_delete_marker
            && current.deleted
            && rule.tags.is_empty()
            && rule.covers(&current.key, 0);
        KeyVersions {
            successor_modified: current.last_modified(),
            noncurrent: 0,
            lone_marker: removable.then(|| (current.key.clone(), current.version_ref())),
        }
    }
}

/// Seconds since the epoch of a version's time.
fn secs(version: Version) -> u64 {
    version.unix_millis() as u64 / 1000
}
