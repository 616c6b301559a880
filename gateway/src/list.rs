//! Listing: ask every node for its sorted run of keys after the marker, merge the runs, keep the
//! newest version of each key, drop tombstones.

use crate::cluster::Cluster;
use crate::error::S3Error;
use std::collections::BTreeMap;
use storage_node::protocol::{ListItem, ListRequest};
use storage_node::record::{BucketId, ListEntry};

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
) -> Result<Listing, S3Error> {
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
    let nodes = cluster.all_nodes();
    let answers = cluster
        .on_all(&nodes, |n| cluster.client.list(&n.addr, &request))
        .await;
    let failed = answers.iter().filter(|a| a.is_err()).count();
    // Each shard has k+m holders; with at most m nodes silent every shard still has k answering.
    if failed > cluster.layout.parity_shards() {
        return Err(S3Error::ServiceUnavailable(format!(
            "{failed} of {} nodes did not answer the listing",
            nodes.len()
        )));
    }
    let mut merged: BTreeMap<String, ListItem> = BTreeMap::new();
    // Names past the end of a truncated run may be missing from it: only names up to the smallest
    // truncated run's last name are complete.
    let mut complete_up_to: Option<String> = None;
    for answer in answers.into_iter().flatten() {
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
    use storage_node::record::Version;

    fn key(name: &str, micros: u64, deleted: bool) -> ListItem {
        ListItem::Key(ListEntry {
            key: name.into(),
            version: Version { micros, salt: 0 },
            deleted,
            size: 1,
            etag: String::new(),
            modified: None,
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
