//! Calls of one kind to one node (commits, lookups), gathered into one call while earlier calls
//! to it are in the air.
//!
//! Under many small concurrent writes every holder gets one commit per write, and under small
//! reads a read quorum of holders one lookup per read; each call costs the gateway and the node
//! far more than the record it carries or asks for: a request to sign, send, parse and answer,
//! and the syscalls and wake-ups of both ends. So a call leaves at once, alone (as itself, in the
//! trace of the request that makes it), while fewer than `Kind::FLIGHTS` calls of its kind to its
//! node are in the air; otherwise it waits for one of them to land and leaves with every call of its
//! kind queued meanwhile, in one batch (`Kind::BATCH_PATH`: a JSON array, answered with one
//! outcome each, in order). A lone client never waits; under load the number of calls no longer
//! grows with the number of requests. The node hands a batch's commits to its group committer
//! like lone ones, so each is still applied all-or-nothing by itself and answered by itself
//! (`CommitOutcome`); it reads a batch's lookups one after another, each as it would alone
//! (`LookupOutcome`).
//!
//! How many calls fly at once is the kind's trade between the batches' size and the wait for a
//! slot. Lookups fly one at a time: with two, 4 KiB GETs at 32 in flight ran at 9,256-9,777/s and
//! the nodes spent 74-80 µs per GET; with one, 9,326-10,716/s and 64-71 µs (the batches twice as
//! full), and a p99 no longer (docs/performance.md). Commits fly two at a time: one, three or four
//! moved the 4 KiB PUT's rate and p99 by no more than the noise when measured.

use crate::client::{NodeClient, RpcError};
use crate::protocol::{CommitOutcome, Lookup, LookupOutcome, LookupRequest};
use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Most calls in one batch, and most bytes (a record that completes a multipart upload of
/// thousands of parts is large): more wait for the next.
const MAX_BATCH: usize = 64;
const _: () = assert!(MAX_BATCH <= crate::protocol::MAX_BATCH_ENTRIES);
const MAX_BATCH_BYTES: usize = 4 << 20;

/// A kind of call that can be gathered.
pub(crate) trait Kind: Sized + 'static {
    /// What one call carries, as it waits in a queue.
    type Item: Send + 'static;
    /// What the caller of one call gets back.
    type Outcome: Send + 'static;
    /// One call's outcome in a batch's answer.
    type Answer: DeserializeOwned + Send;
    /// Where a batch is posted.
    const BATCH_PATH: &'static str;
    /// Calls of this kind to one node in the air at once before more queue for the next.
    const FLIGHTS: usize;
    fn queues(gathering: &Gathering) -> &Queues<Self>;
    /// An item's share of `MAX_BATCH_BYTES`.
    fn size(item: &Self::Item) -> usize;
    /// The call of one item alone.
    fn alone(
        client: &NodeClient,
        addr: &str,
        item: Self::Item,
    ) -> impl Future<Output = Result<Self::Outcome, RpcError>> + Send;
    /// The body of a batch: the JSON array of its items.
    fn batch_body(items: Vec<&Self::Item>) -> Result<Bytes, RpcError>;
    /// An item's outcome in a batch, as its call alone would have answered it.
    fn answered(answer: Self::Answer) -> Result<Self::Outcome, RpcError>;
}

/// Plain commits: each a serialized `CommitRequest`, batched in `POST /v1/commits`.
pub(crate) struct Commits;
/// Lookups of a key's current record or one version of it, batched in `POST /v1/objects`.
pub(crate) struct Lookups;

/// The calls waiting for each node, of each kind, shared by the clones of a `NodeClient`.
#[derive(Default)]
pub(crate) struct Gathering {
    commits: Queues<Commits>,
    lookups: Queues<Lookups>,
}

/// The queue of one kind of call, per node.
pub(crate) struct Queues<K: Kind> {
    nodes: Mutex<HashMap<String, Queue<K>>>,
}

impl<K: Kind> Default for Queues<K> {
    fn default() -> Self {
        Queues {
            nodes: Mutex::default(),
        }
    }
}

struct Queue<K: Kind> {
    /// Calls in the air; never more than `Kind::FLIGHTS`.
    flying: usize,
    waiting: Vec<Queued<K>>,
}

impl<K: Kind> Default for Queue<K> {
    fn default() -> Self {
        Queue {
            flying: 0,
            waiting: Vec::new(),
        }
    }
}

/// A call waiting for its turn, and where its outcome goes.
struct Queued<K: Kind> {
    item: K::Item,
    done: oneshot::Sender<Result<K::Outcome, RpcError>>,
}

/// Whether a call leaves on its own now, or later with others.
enum Turn<K: Kind> {
    Now(K::Item),
    Later(oneshot::Receiver<Result<K::Outcome, RpcError>>),
}

/// Makes one call of kind `K` to the node at `addr`, alone or with others (see the module header),
/// and returns its outcome.
pub(crate) async fn call<K: Kind>(
    client: &NodeClient,
    addr: &str,
    item: K::Item,
) -> Result<K::Outcome, RpcError> {
    let turn = {
        let mut nodes = K::queues(client.gathering())
            .nodes
            .lock()
            .expect("never poisoned");
        let queue = match nodes.get_mut(addr) {
            Some(queue) => queue,
            None => nodes.entry(addr.to_string()).or_default(),
        };
        if queue.flying < K::FLIGHTS {
            queue.flying += 1;
            Turn::Now(item)
        } else {
            let (done, outcome) = oneshot::channel();
            queue.waiting.push(Queued { item, done });
            Turn::<K>::Later(outcome)
        }
    };
    match turn {
        // As long as a lone call may take, waiting for a slot included: a paused node must not
        // hold a request up longer because its call queued behind another.
        Turn::Later(outcome) => match tokio::time::timeout(client.timeout(), outcome).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(RpcError::Gathered("the batch was dropped".into())),
            Err(_) => Err(RpcError::Timeout),
        },
        Turn::Now(item) => {
            // Lands even if this future is dropped mid-call, so that the slot is never lost.
            let _landing = Landing::<K> {
                client,
                addr,
                kind: PhantomData,
            };
            // Boxed: a call's future (hyper's request inside) is kilobytes, and inline it made
            // every gathered call's future as large, though most wait for a batch instead; each
            // was moved whole on its way into the caller's join (part of the `memmove` that was
            // 7% of the gateway's samples under 4 KiB PUTs). A commit's future is 280 bytes so,
            // a lookup's 360 (from 1,664 and 2,024).
            Box::pin(K::alone(client, addr, item)).await
        }
    }
}

/// Gives a finished call's slot to the calls that queued meanwhile, or frees it.
struct Landing<'a, K: Kind> {
    client: &'a NodeClient,
    addr: &'a str,
    kind: PhantomData<K>,
}

impl<K: Kind> Drop for Landing<'_, K> {
    fn drop(&mut self) {
        let Some(batch) = next_batch::<K>(self.client.gathering(), self.addr) else {
            return;
        };
        let client = self.client.clone();
        let addr = self.addr.to_string();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(fly::<K>(client, addr, batch));
            }
            // The runtime is going away: so are the callers waiting for these outcomes.
            Err(_) => drop(batch),
        }
    }
}

/// The calls queued for `addr` (see `MAX_BATCH`), for the call whose slot is being given up;
/// `None` (and the slot freed) when none are.
fn next_batch<K: Kind>(gathering: &Gathering, addr: &str) -> Option<Vec<Queued<K>>> {
    let mut nodes = K::queues(gathering).nodes.lock().expect("never poisoned");
    let queue = nodes.get_mut(addr)?;
    // Those whose callers gave up waiting are not sent: they were answered with a timeout.
    queue.waiting.retain(|q| !q.done.is_closed());
    if queue.waiting.is_empty() {
        queue.flying -= 1;
        return None;
    }
    let mut bytes = 0;
    let take = queue
        .waiting
        .iter()
        .take(MAX_BATCH)
        .take_while(|q| {
            bytes += K::size(&q.item);
            bytes <= MAX_BATCH_BYTES
        })
        .count()
        .max(1);
    Some(queue.waiting.drain(..take).collect())
}

/// Sends batches to `addr` in the slot it holds until nothing is left queued.
async fn fly<K: Kind>(client: NodeClient, addr: String, mut batch: Vec<Queued<K>>) {
    loop {
        send(&client, &addr, batch).await;
        match next_batch(client.gathering(), &addr) {
            Some(next) => batch = next,
            None => return,
        }
    }
}

async fn send<K: Kind>(client: &NodeClient, addr: &str, mut batch: Vec<Queued<K>>) {
    if batch.len() == 1 {
        let Queued { item, done } = batch.pop().expect("one");
        let _ = done.send(K::alone(client, addr, item).await);
        return;
    }
    let answers = match K::batch_body(batch.iter().map(|q| &q.item).collect()) {
        Ok(body) => client.batch::<K::Answer>(addr, K::BATCH_PATH, body).await,
        Err(e) => Err(e),
    };
    match answers {
        Ok(answers) if answers.len() == batch.len() => {
            for (queued, answer) in batch.into_iter().zip(answers) {
                let _ = queued.done.send(K::answered(answer));
            }
        }
        Ok(answers) => {
            let why = format!("{} outcomes for a batch of {}", answers.len(), batch.len());
            for queued in batch {
                let _ = queued.done.send(Err(RpcError::Gathered(why.clone())));
            }
        }
        // A node of a release before batches (in a cluster being upgraded): one call each.
        Err(e) if e.is_not_found() => {
            for queued in batch {
                let _ = queued.done.send(K::alone(client, addr, queued.item).await);
            }
        }
        Err(e) => {
            for queued in batch {
                let _ = queued.done.send(Err(e.for_each_gathered()));
            }
        }
    }
}

impl Kind for Commits {
    type Item = Bytes;
    type Outcome = bool;
    type Answer = CommitOutcome;
    const BATCH_PATH: &'static str = "/v1/commits";
    const FLIGHTS: usize = 2;

    fn queues(gathering: &Gathering) -> &Queues<Self> {
        &gathering.commits
    }

    fn size(body: &Bytes) -> usize {
        body.len()
    }

    fn alone(
        client: &NodeClient,
        addr: &str,
        body: Bytes,
    ) -> impl Future<Output = Result<bool, RpcError>> + Send {
        client.commit_alone(addr, body)
    }

    /// The serialized commits joined: each is serialized once, when it is made.
    fn batch_body(bodies: Vec<&Bytes>) -> Result<Bytes, RpcError> {
        let mut array = Vec::with_capacity(bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 1);
        array.push(b'[');
        for (i, body) in bodies.into_iter().enumerate() {
            if i > 0 {
                array.push(b',');
            }
            array.extend_from_slice(body);
        }
        array.push(b']');
        Ok(array.into())
    }

    fn answered(outcome: CommitOutcome) -> Result<bool, RpcError> {
        match outcome {
            CommitOutcome::Applied(applied) => Ok(applied),
            CommitOutcome::Refused { status, error } => Err(refusal(status, error)),
        }
    }
}

impl Kind for Lookups {
    type Item = LookupRequest;
    type Outcome = Lookup;
    type Answer = LookupOutcome;
    const BATCH_PATH: &'static str = "/v1/objects";
    const FLIGHTS: usize = 1;

    fn queues(gathering: &Gathering) -> &Queues<Self> {
        &gathering.lookups
    }

    fn size(lookup: &LookupRequest) -> usize {
        lookup.key.len()
    }

    fn alone(
        client: &NodeClient,
        addr: &str,
        lookup: LookupRequest,
    ) -> impl Future<Output = Result<Lookup, RpcError>> + Send {
        client.object_alone(addr, lookup)
    }

    fn batch_body(lookups: Vec<&LookupRequest>) -> Result<Bytes, RpcError> {
        Ok(serde_json::to_vec(&lookups)?.into())
    }

    fn answered(outcome: LookupOutcome) -> Result<Lookup, RpcError> {
        match outcome {
            LookupOutcome::Found(lookup) => Ok(*lookup),
            LookupOutcome::Refused { status, error } => Err(refusal(status, error)),
        }
    }
}

/// A call's refusal in a batch, as the error its call alone would have met.
fn refusal(status: u16, error: String) -> RpcError {
    RpcError::Status(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        error,
    )
}

impl RpcError {
    /// This failure of a whole batch, as the outcome of one of its calls: what callers test
    /// (timeouts, statuses) is kept, the rest carried as its message.
    fn for_each_gathered(&self) -> RpcError {
        match self {
            RpcError::Timeout => RpcError::Timeout,
            RpcError::Status(status, message) => RpcError::Status(*status, message.clone()),
            RpcError::Truncated => RpcError::Truncated,
            other => RpcError::Gathered(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ClusterSecret;
    use std::time::Duration;
    use tokio::net::TcpListener;

    fn flying<K: Kind>(client: &NodeClient, addr: &str) -> usize {
        let nodes = K::queues(client.gathering()).nodes.lock().unwrap();
        nodes.get(addr).map_or(0, |q| q.flying)
    }

    /// A node that takes connections and never answers.
    async fn silent_node() -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        (addr, held)
    }

    /// Callers that give up (a client that hung up, say) free their slots for good: the node's
    /// calls of that kind fly again, one at a time, once the calls that were in the air have
    /// ended. Until then no more than the kind's `FLIGHTS` are in the air.
    async fn callers_that_give_up_free_their_slots<K: Kind + Send>(item: impl Fn() -> K::Item)
    where
        K::Outcome: std::fmt::Debug,
    {
        let (addr, _held) = silent_node().await;
        let timeout = Duration::from_millis(300);
        let client = NodeClient::new(ClusterSecret::new("s".repeat(32)), timeout);
        let callers: Vec<_> = (0..K::FLIGHTS + 3)
            .map(|_| {
                let (client, addr, item) = (client.clone(), addr.clone(), item());
                tokio::spawn(async move { call::<K>(&client, &addr, item).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(flying::<K>(&client, &addr), K::FLIGHTS, "the rest queued");
        for caller in &callers {
            caller.abort();
        }
        tokio::time::sleep(timeout * 3).await;
        assert_eq!(flying::<K>(&client, &addr), 0, "every slot was given back");

        let lone = call::<K>(&client, &addr, item()).await;
        assert!(matches!(lone, Err(RpcError::Timeout)), "{lone:?}");
        assert_eq!(flying::<K>(&client, &addr), 0);
    }

    #[tokio::test]
    async fn commits_that_give_up_free_their_slots() {
        callers_that_give_up_free_their_slots::<Commits>(|| Bytes::from_static(b"{}")).await;
    }

    #[tokio::test]
    async fn lookups_that_give_up_free_their_slots() {
        callers_that_give_up_free_their_slots::<Lookups>(|| LookupRequest {
            bucket: [7; 16],
            key: "k".into(),
            version: None,
        })
        .await;
    }
}
