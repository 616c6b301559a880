//! The lifecycle worker: applies each bucket's lifecycle rules (expiration, and aborting
//! incomplete multipart uploads) and aborts uploads abandoned for `abandoned_upload_days`.
//!
//! Every gateway runs it; what it does is idempotent (an expired key is deleted once: it then no
//! longer lists), so several gateways only repeat each other's work.

use crate::ops::cluster::Cluster;
use crate::ops::delete::remove;
use crate::ops::list::{list, ListQuery};
use crate::ops::upload::{abort_upload, all_uploads};
use crate::s3::error::S3Error;
use node_rpc::protocol::unix_now;
use node_rpc::record::{BucketRecord, LifecycleRule};
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
    async fn apply_all(&self) -> Result<(), S3Error> {
        let buckets: Vec<BucketRecord> = self
            .cluster
            .buckets(false)
            .await?
            .into_values()
            .filter(|b| !b.deleted)
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

    async fn apply(&self, bucket: &BucketRecord) -> Result<(), S3Error> {
        let now = unix_now();
        let rules: Vec<&LifecycleRule> = bucket
            .lifecycle
            .iter()
            .flatten()
            .filter(|r| r.enabled)
            .collect();
        for rule in &rules {
            self.expire(bucket, rule, now).await?;
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
            let age = now.saturating_sub(upload.version.unix_millis() as u64 / 1000);
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
    ) -> Result<(), S3Error> {
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
                let age = now.saturating_sub(entry.last_modified().unix_millis() as u64 / 1000);
                if date_passed || max_age.is_some_and(|max| age >= max) {
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
}
