//! The `x-amz-object-lock-*` headers a version's lock is shown and sent with.

use chrono::DateTime;
use node_rpc::object_lock::ObjectLock;

/// The headers GET and HEAD show a version's lock with, and a replica of it is sent with.
pub fn lock_headers(lock: &ObjectLock) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if let Some(r) = &lock.retention {
        headers.push(("x-amz-object-lock-mode", r.mode.name().to_string()));
        headers.push(("x-amz-object-lock-retain-until-date", format_date(r.until)));
    }
    if let Some(on) = lock.legal_hold {
        headers.push(("x-amz-object-lock-legal-hold", on_name(on).to_string()));
    }
    headers
}

pub fn on_name(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

/// A time in milliseconds since the epoch as S3 writes it (`2030-01-01T00:00:00.000Z`).
pub fn format_date(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
