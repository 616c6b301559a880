//! The system table: the records every node holds whole (buckets and access keys). A record is
//! written to every node and acknowledged by a majority; a read asks every node and merges the
//! first majority's answers, newest version of each entry first, so it always sees the newest
//! acknowledged record. Each gateway caches what it read for a moment.

use crate::ops::error::OpError;
use crate::ops::quorum::Quorum;
use futures::stream::{FuturesUnordered, StreamExt};
use node_rpc::record::{BucketRecord, KeyRecord, Version};
use node_rpc::RpcError;
use placement::NodeInfo;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One entry of the system table: what it is found by in its table (a bucket name, a key id) and its version (last writer wins).
pub trait Entry: Clone {
    fn table_key(&self) -> &str;
    fn version(&self) -> Version;
}

impl Entry for BucketRecord {
    fn table_key(&self) -> &str {
        &self.name
    }
    fn version(&self) -> Version {
        self.version
    }
}

impl Entry for KeyRecord {
    fn table_key(&self) -> &str {
        &self.id
    }
    fn version(&self) -> Version {
        self.version
    }
}

/// A table as a gateway last read it: the newest record of each name, tombstones included.
pub type Snapshot<R> = Arc<HashMap<String, R>>;

/// A gateway's cache of one table.
pub struct Table<R> {
    /// How long a read is trusted before the nodes are asked again.
    ttl: Duration,
    cache: Mutex<Option<(Instant, Snapshot<R>)>>,
}

impl<R: Entry> Table<R> {
    pub fn new(ttl: Duration) -> Table<R> {
        Table {
            ttl,
            cache: Mutex::new(None),
        }
    }

    /// The cached table if it was read less than `max_age` ago (at most the table's TTL).
    pub fn cached(&self, max_age: Duration) -> Option<Snapshot<R>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (at, table) = cache.as_ref()?;
        (at.elapsed() < max_age.min(self.ttl)).then(|| table.clone())
    }

    /// The entry `name` if `live` takes it: from the cache, or, when a copy older than
    /// `miss_refresh` lacks it, from the table read again (`read_fresh`). So an entry made
    /// through another gateway is found at once, and names that exist nowhere make a gateway
    /// read the table at most once per `miss_refresh`.
    pub async fn lookup<Fut>(
        &self,
        name: &str,
        live: impl Fn(&R) -> bool,
        miss_refresh: Duration,
        read_fresh: impl FnOnce() -> Fut,
    ) -> Result<Option<R>, OpError>
    where
        Fut: Future<Output = Result<Snapshot<R>, OpError>>,
    {
        let find = |table: &Snapshot<R>| table.get(name).filter(|r| live(r)).cloned();
        if let Some(found) = self.cached(self.ttl).as_ref().and_then(&find) {
            return Ok(Some(found));
        }
        if let Some(table) = self.cached(miss_refresh) {
            return Ok(find(&table));
        }
        Ok(find(&read_fresh().await?))
    }

    /// The table, from the cache unless `fresh` or expired, else from a majority of `nodes`.
    pub async fn read<'a, F, Fut>(
        &self,
        nodes: &[&'a NodeInfo],
        fresh: bool,
        what: &str,
        fetch: F,
    ) -> Result<Snapshot<R>, OpError>
    where
        F: Fn(&'a NodeInfo) -> Fut,
        Fut: Future<Output = Result<Vec<R>, RpcError>>,
    {
        if !fresh {
            if let Some(table) = self.cached(self.ttl) {
                return Ok(table);
            }
        }
        let majority = Quorum::majority(nodes.len());
        // Records are written to a majority, so any majority holds the newest of each: the
        // slowest nodes are not waited for.
        let mut answers: FuturesUnordered<_> = nodes.iter().map(|n| fetch(n)).collect();
        let mut ok = 0;
        let mut table: HashMap<String, R> = HashMap::new();
        while let Some(answer) = answers.next().await {
            let Ok(records) = answer else { continue };
            ok += 1;
            for record in records {
                match table.get(record.table_key()) {
                    Some(have) if have.version() >= record.version() => {}
                    _ => {
                        table.insert(record.table_key().to_string(), record);
                    }
                }
            }
            if majority.met(ok) {
                break;
            }
        }
        majority.require(ok, nodes.len(), what)?;
        let table = Arc::new(table);
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), table.clone()));
        Ok(table)
    }

    /// Writes a record to every node through `store`; a majority must take it. The cache is
    /// dropped, so that this gateway's next read sees the change.
    pub async fn write<'a, F, Fut>(
        &self,
        nodes: &[&'a NodeInfo],
        what: &str,
        store: F,
    ) -> Result<(), OpError>
    where
        F: Fn(&'a NodeInfo) -> Fut,
        Fut: Future<Output = Result<bool, RpcError>>,
    {
        let answers = futures::future::join_all(nodes.iter().map(|n| store(n))).await;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Quorum::majority(nodes.len()).tally(&answers, what)?;
        Ok(())
    }
}
