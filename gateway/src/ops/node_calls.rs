//! The node calls that finding and reading a version make, behind a trait: in a gateway they go
//! through the node client, and unit tests answer them with made-up holders (slow, failing,
//! behind), so that how a read counts answers, hedges and treats an unfinished write is tested
//! without processes.
//!
//! Each call takes what it needs by value and returns a `'static` future: the answers a lookup
//! does not wait for finish in the background (see `ops::lookup`).

use crate::ops::fragment_stream::FragmentStream;
use futures::future::{BoxFuture, FutureExt};
use node_rpc::client::NodeClient;
use node_rpc::protocol::{Lookup, UndoRequest};
use node_rpc::record::{BucketId, Version, VersionRef};
use node_rpc::RpcError;

/// The read path's calls to the node at `addr`.
pub trait NodeCalls: Send + Sync {
    /// The node's record of a key: version `which`, else its current one.
    fn object(
        &self,
        addr: &str,
        bucket: BucketId,
        key: &str,
        which: Option<VersionRef>,
    ) -> BoxFuture<'static, Result<Lookup, RpcError>>;

    /// `object`, with the node's fragment file of the record's first part sent along when it
    /// sends one (see `Lookup::fragment_len`).
    fn object_and_fragment(
        &self,
        addr: &str,
        bucket: BucketId,
        key: &str,
        which: Option<VersionRef>,
    ) -> BoxFuture<'static, Result<(Lookup, Option<FragmentStream>), RpcError>>;

    /// The newest version the node keeps of a key older than `version`.
    fn object_before(
        &self,
        addr: &str,
        bucket: BucketId,
        key: &str,
        version: Version,
    ) -> BoxFuture<'static, Result<Lookup, RpcError>>;

    /// The record of `version` the node keeps as a hint for `holder` (a node id).
    fn hinted_record(
        &self,
        addr: &str,
        holder: &str,
        bucket: BucketId,
        key: &str,
        version: Version,
    ) -> BoxFuture<'static, Result<Lookup, RpcError>>;

    /// How many writes the node keeps for holders that were down, not yet handed over.
    fn hints(&self, addr: &str) -> BoxFuture<'static, Result<u64, RpcError>>;

    /// Undoes an unfinished write there; true when the node had it and undid it.
    fn undo(&self, addr: &str, undo: UndoRequest) -> BoxFuture<'static, Result<bool, RpcError>>;

    /// `len` bytes of fragment file `id` in `slot` from `offset`.
    fn fragment(
        &self,
        addr: &str,
        id: &str,
        slot: u8,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'static, Result<FragmentStream, RpcError>>;
}

impl NodeCalls for NodeClient {
    fn object(
        &self,
        addr: &str,
        bucket: BucketId,
        key: &str,
        which: Option<VersionRef>,
    ) -> BoxFuture<'static, Result<Lookup, RpcError>> {
        let (client, addr, key) = (self.clone(), addr.to_string(), key.to_string());
        async move { client.object(&addr, &bucket, &key, which).await }.boxed()
    }

    fn object_and_fragment(
        &self,
        addr: &str,
        bucket: BucketId,
        key: &str,
        which: Option<VersionRef>,
    ) -> BoxFuture<'static, Result<(Lookup, Option<FragmentStream>), RpcError>> {
        let (client, addr, key) = (self.clone(), addr.to_string(), key.to_string());
        async move {
            let (lookup, rest) = client
                .object_and_fragment(&addr, &bucket, &key, which)
                .await?;
            Ok((lookup, rest.map(FragmentStream::from)))
        }
        .boxed()
    }

    fn object_before(
        &self,
        addr: &str,
        bucket: BucketId,
        key: &str,
        version: Version,
    ) -> BoxFuture<'static, Result<Lookup, RpcError>> {
        let (client, addr, key) = (self.clone(), addr.to_string(), key.to_string());
        async move { client.object_before(&addr, &bucket, &key, version).await }.boxed()
    }

    fn hinted_record(
        &self,
        addr: &str,
        holder: &str,
        bucket: BucketId,
        key: &str,
        version: Version,
    ) -> BoxFuture<'static, Result<Lookup, RpcError>> {
        let (client, addr, key) = (self.clone(), addr.to_string(), key.to_string());
        let holder = holder.to_string();
        async move {
            client
                .hinted_record(&addr, &holder, &bucket, &key, version)
                .await
        }
        .boxed()
    }

    fn hints(&self, addr: &str) -> BoxFuture<'static, Result<u64, RpcError>> {
        let (client, addr) = (self.clone(), addr.to_string());
        async move { Ok(client.health(&addr).await?.hints) }.boxed()
    }

    fn undo(&self, addr: &str, undo: UndoRequest) -> BoxFuture<'static, Result<bool, RpcError>> {
        let (client, addr) = (self.clone(), addr.to_string());
        async move { client.undo(&addr, &undo).await }.boxed()
    }

    fn fragment(
        &self,
        addr: &str,
        id: &str,
        slot: u8,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'static, Result<FragmentStream, RpcError>> {
        let (client, addr, id) = (self.clone(), addr.to_string(), id.to_string());
        async move {
            let body = client.get_fragment(&addr, &id, slot, offset, len).await?;
            Ok(FragmentStream::from(body))
        }
        .boxed()
    }
}
