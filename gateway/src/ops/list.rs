//! Listing: ask the nodes for their sorted runs of keys after the marker, merge the runs, keep
//! the newest version of each key, drop tombstones. Version listings merge runs of (key, version)
//! the same way, keeping every version. The nodes asked are those that hold a read quorum of
//! every shard (two, in a cluster of k+m nodes, where every node holds every shard): they see
//! every acknowledged write, as a lookup does. While a substitute may keep the only copies of a
//! write's share (see `Liveness::reads_settled`), or when one of them does not answer, every
//! node is asked.

use crate::ops::cluster::Cluster;
use crate::ops::error::OpError;
use crate::ops::quorum::Quorum;
use node_rpc::protocol::{ListItem, ListRequest, ListResponse, VersionListRequest};
use node_rpc::record::{BucketId, ListEntry, Version, VersionRef};
use node_rpc::RpcError;
use placement::NodeInfo;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::future::Future;

pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Only names strictly after this one.
    pub after: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Default)]
pub struct Listing {
    pub keys: Vec<ListEntry>,
    pub prefixes: Vec<String>,
    /// Set when more names follow: resume after this name.
    pub next_after: Option<String>,
}

pub async fn list(
    cluster: &Cluster,
    bucket: &BucketId,
    query: &ListQuery,
) -> Result<Listing, OpError> {
    if query.max_keys == 0 {
        return Ok(Listing::default());
    }
    let request = ListRequest {
        bucket: *bucket,
        prefix: query.prefix.clone(),
        start_after: query.after.clone(),
        delimiter: query.delimiter.clone(),
        limit: query.max_keys + 1,
    };
    let answers = ask_nodes(cluster, |n| cluster.client.list(&n.addr, &request)).await?;
    let mut merged: BTreeMap<String, ListItem> = BTreeMap::new();
    // Names past the end of a truncated run may be missing from it: only names up to the smallest
    // truncated run's last name are complete.
    let mut complete_up_to: Option<String> = None;
    for answer in answers {
        if answer.truncated {
            if let Some(last) = answer.items.last() {
                let last = last.name().to_string();
                if complete_up_to.as_ref().is_none_or(|c| last < *c) {
                    complete_up_to = Some(last);
                }
            }
        }
        for item in answer.items {
            merge(&mut merged, item);
        }
    }
    let mut listing = Listing::default();
    let mut count = 0;
    let mut last_seen = None;
    for (name, item) in merged {
        if complete_up_to.as_ref().is_some_and(|c| name > *c) {
            break;
        }
        let live = !matches!(&item, ListItem::Key(e) if e.deleted);
        if live && count == query.max_keys {
            listing.next_after = last_seen;
            return Ok(listing);
        }
        match item {
            ListItem::Key(entry) if !entry.deleted => listing.keys.push(entry),
            ListItem::Key(_) => {}
            ListItem::Prefix(prefix) => listing.prefixes.push(prefix),
        }
        if live {
            count += 1;
        }
        last_seen = Some(name);
    }
    if complete_up_to.is_some() {
        listing.next_after = last_seen;
    }
    Ok(listing)
}

/// The answers of the read cover's nodes, or else of every node (see the module's header).
async fn ask_nodes<'a, F, Fut>(cluster: &'a Cluster, call: F) -> Result<Vec<ListResponse>, OpError>
where
    F: Fn(&'a NodeInfo) -> Fut,
    Fut: Future<Output = Result<ListResponse, RpcError>>,
{
    if let Some(cover) = cluster.read_cover() {
        let answers = cluster.on_all(&cover, &call).await;
        if answers.iter().all(Result::is_ok) {
            return Ok(answers.into_iter().flatten().collect());
        }
    }
    let answers = cluster.on_all(&cluster.all_nodes(), call).await;
    enough_answers(cluster, answers)
}

/// The nodes' answers, when enough came: each shard has k+m holders, so with at most m nodes
/// silent every shard still has k answering.
fn enough_answers(
    cluster: &Cluster,
    answers: Vec<Result<ListResponse, RpcError>>,
) -> Result<Vec<ListResponse>, OpError> {
    let quorum = Quorum {
        needed: answers.len().saturating_sub(cluster.layout.parity_shards()),
    };
    quorum.tally(&answers, "nodes answered the listing")?;
    Ok(answers.into_iter().flatten().collect())
}

pub struct VersionQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub version_marker: Option<VersionRef>,
    pub max_keys: usize,
    /// Leave out delete markers: in a bucket that never had versioning they are the tombstones
    /// of deleted keys, which S3 does not list.
    pub hide_markers: bool,
}

#[derive(Debug, Default)]
pub struct VersionListing {
    /// Versions in order, each with whether it is its key's current one.
    pub versions: Vec<(ListEntry, bool)>,
    pub prefixes: Vec<String>,
    /// Set when more follow: resume after this key (and this version of it, when given).
    pub next: Option<(String, Option<VersionRef>)>,
}

/// Where an item sits in a version listing: keys in order, each key's versions newest first.
type Position = (String, Reverse<Version>);

fn position(item: &ListItem) -> Position {
    match item {
        ListItem::Key(entry) => (entry.key.clone(), Reverse(entry.version)),
        ListItem::Prefix(prefix) => (prefix.clone(), Reverse(Version::default())),
    }
}

pub async fn list_versions(
    cluster: &Cluster,
    bucket: &BucketId,
    query: &VersionQuery,
) -> Result<VersionListing, OpError> {
    if query.max_keys == 0 {
        return Ok(VersionListing::default());
    }
    let request = VersionListRequest {
        bucket: *bucket,
        prefix: query.prefix.clone(),
        key_marker: query.key_marker.clone(),
        version_marker: query.version_marker,
        delimiter: query.delimiter.clone(),
        limit: query.max_keys + 1,
    };
    let answers = ask_nodes(cluster, |n| cluster.client.list_versions(&n.addr, &request)).await?;
    let mut merged: BTreeMap<Position, ListItem> = BTreeMap::new();
    let mut complete_up_to: Option<Position> = None;
    for answer in answers {
        if answer.truncated {
            if let Some(last) = answer.items.last().map(position) {
                if complete_up_to.as_ref().is_none_or(|c| last < *c) {
                    complete_up_to = Some(last);
                }
            }
        }
        for item in answer.items {
            merged.entry(position(&item)).or_insert(item);
        }
    }
    let mut listing = VersionListing::default();
    // The first version of a key in the whole listing is its current one; a page that resumes
    // inside a key has already shown it.
    let mut previous_key = query
        .key_marker
        .clone()
        .filter(|_| query.version_marker.is_some());
    let mut count = 0;
    let mut last_seen = None;
    for (at, item) in merged {
        if complete_up_to.as_ref().is_some_and(|c| at > *c) {
            break;
        }
        let shown = !matches!(&item, ListItem::Key(e) if e.deleted && query.hide_markers);
        if shown && count == query.max_keys {
            listing.next = last_seen;
            return Ok(listing);
        }
        match item {
            ListItem::Key(entry) => {
                let latest = previous_key.as_deref() != Some(entry.key.as_str());
                previous_key = Some(entry.key.clone());
                last_seen = Some((entry.key.clone(), Some(entry.version_ref())));
                if shown {
                    listing.versions.push((entry, latest));
                }
            }
            ListItem::Prefix(prefix) => {
                last_seen = Some((prefix.clone(), None));
                listing.prefixes.push(prefix);
            }
        }
        if shown {
            count += 1;
        }
    }
    if complete_up_to.is_some() {
        listing.next = last_seen;
    }
    Ok(listing)
}

fn merge(merged: &mut BTreeMap<String, ListItem>, item: ListItem) {
    let name = item.name().to_string();
    match (merged.get(&name), &item) {
        (Some(ListItem::Key(have)), ListItem::Key(new)) if have.version >= new.version => {}
        (Some(ListItem::Prefix(_)), _) => {}
        _ => {
            merged.insert(name, item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, micros: u64, deleted: bool) -> ListItem {
        ListItem::Key(ListEntry {
            key: name.into(),
            version: Version { micros, salt: 0 },
            versioned: false,
            deleted,
            size: 1,
            etag: String::new(),
            modified: None,
            owner: None,
        })
    }

    #[test]
    fn newest_version_wins_and_tombstones_override() {
        let mut merged = BTreeMap::new();
        merge(&mut merged, key("a", 2, false));
        merge(&mut merged, key("a", 1, false));
        merge(&mut merged, key("b", 1, false));
        merge(&mut merged, key("b", 3, true));
        assert_eq!(merged["a"], key("a", 2, false));
        assert_eq!(merged["b"], key("b", 3, true));
    }
}
