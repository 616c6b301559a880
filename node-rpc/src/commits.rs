//! Plain commits to one node, gathered into one call while earlier calls to it are in the air.
//!
//! Under many small concurrent writes every holder gets one commit per write, and each call costs
//! the gateway and the node far more than the record it carries: a request to sign, send, parse
//! and answer, and the syscalls and wake-ups of both ends. So a commit leaves at once, alone (as
//! `POST /v1/commit`, in the trace of the request that makes it), while fewer than `FLIGHTS`
//! calls to its node are in the air; otherwise it waits for one of them to land and leaves with
//! every commit queued meanwhile, in one `POST /v1/commits`. A lone writer never waits; under
//! load the number of calls no longer grows with the number of writes. The node hands a batch's
//! commits to its group committer like lone ones, so each is still applied all-or-nothing by
//! itself and answered by itself (`CommitOutcome`).

use crate::client::{NodeClient, RpcError};
use crate::protocol::CommitOutcome;
use bytes::Bytes;
use http::StatusCode;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Calls to one node in the air at once before commits queue for the next.
const FLIGHTS: usize = 2;
/// Most commits in one call, and most bytes (a record that completes a multipart upload of
/// thousands of parts is large): more wait for the next.
const MAX_BATCH: usize = 64;
const MAX_BATCH_BYTES: usize = 4 << 20;

/// The commits waiting for each node, shared by the clones of a `NodeClient`.
#[derive(Default)]
pub(crate) struct Gathering {
    nodes: Mutex<HashMap<String, Queue>>,
}

#[derive(Default)]
struct Queue {
    /// Calls in the air; never more than `FLIGHTS`.
    flying: usize,
    waiting: Vec<Queued>,
}

/// A commit waiting for a call: its serialized `CommitRequest`, and where its outcome goes.
struct Queued {
    body: Bytes,
    done: oneshot::Sender<Result<bool, RpcError>>,
}

/// Whether a commit leaves in a call of its own now, or later with others.
enum Turn {
    Now(Bytes),
    Later(oneshot::Receiver<Result<bool, RpcError>>),
}

/// Sends one serialized plain commit to the node at `addr`, alone or with others (see the module
/// header), and returns its outcome.
pub(crate) async fn commit(client: &NodeClient, addr: &str, body: Bytes) -> Result<bool, RpcError> {
    let turn = {
        let mut nodes = client.gathering().nodes.lock().expect("never poisoned");
        let queue = match nodes.get_mut(addr) {
            Some(queue) => queue,
            None => nodes.entry(addr.to_string()).or_default(),
        };
        if queue.flying < FLIGHTS {
            queue.flying += 1;
            Turn::Now(body)
        } else {
            let (done, outcome) = oneshot::channel();
            queue.waiting.push(Queued { body, done });
            Turn::Later(outcome)
        }
    };
    match turn {
        // As long as a lone call may take, waiting for a slot included: a paused node must not
        // hold a write up longer because its commit queued behind another.
        Turn::Later(outcome) => match tokio::time::timeout(client.timeout(), outcome).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(RpcError::Gathered("the batch was dropped".into())),
            Err(_) => Err(RpcError::Timeout),
        },
        Turn::Now(body) => {
            // Lands even if this future is dropped mid-call, so that the slot is never lost.
            let _landing = Landing { client, addr };
            client.commit_alone(addr, body).await
        }
    }
}

/// Gives a finished call's slot to the commits that queued meanwhile, or frees it.
struct Landing<'a> {
    client: &'a NodeClient,
    addr: &'a str,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let Some(batch) = next_batch(self.client.gathering(), self.addr) else {
            return;
        };
        let client = self.client.clone();
        let addr = self.addr.to_string();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(fly(client, addr, batch));
            }
            // The runtime is going away: so are the callers waiting for these outcomes.
            Err(_) => drop(batch),
        }
    }
}

/// The commits queued for `addr` (see `MAX_BATCH`), for the call whose slot is being given
/// up; `None` (and the slot freed) when none are.
fn next_batch(gathering: &Gathering, addr: &str) -> Option<Vec<Queued>> {
    let mut nodes = gathering.nodes.lock().expect("never poisoned");
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
            bytes += q.body.len();
            bytes <= MAX_BATCH_BYTES
        })
        .count()
        .max(1);
    Some(queue.waiting.drain(..take).collect())
}

/// Sends batches to `addr` in the slot it holds until nothing is left queued.
async fn fly(client: NodeClient, addr: String, mut batch: Vec<Queued>) {
    loop {
        send(&client, &addr, batch).await;
        match next_batch(client.gathering(), &addr) {
            Some(next) => batch = next,
            None => return,
        }
    }
}

async fn send(client: &NodeClient, addr: &str, mut batch: Vec<Queued>) {
    if batch.len() == 1 {
        let Queued { body, done } = batch.pop().expect("one");
        let _ = done.send(client.commit_alone(addr, body).await);
        return;
    }
    let mut array = Vec::with_capacity(batch.iter().map(|q| q.body.len() + 1).sum::<usize>() + 1);
    array.push(b'[');
    for (i, queued) in batch.iter().enumerate() {
        if i > 0 {
            array.push(b',');
        }
        array.extend_from_slice(&queued.body);
    }
    array.push(b']');
    match client.commit_batch(addr, array.into()).await {
        Ok(outcomes) if outcomes.len() == batch.len() => {
            for (queued, outcome) in batch.into_iter().zip(outcomes) {
                let _ = queued.done.send(answered(outcome));
            }
        }
        Ok(outcomes) => {
            let why = format!(
                "{} outcomes for a batch of {} commits",
                outcomes.len(),
                batch.len()
            );
            for queued in batch {
                let _ = queued.done.send(Err(RpcError::Gathered(why.clone())));
            }
        }
        // A node of a release before batches (in a cluster being upgraded): one call each.
        Err(e) if e.is_not_found() => {
            for queued in batch {
                let _ = queued
                    .done
                    .send(client.commit_alone(addr, queued.body).await);
            }
        }
        Err(e) => {
            for queued in batch {
                let _ = queued.done.send(Err(e.for_each_gathered()));
            }
        }
    }
}

/// A commit's outcome in a batch, as `POST /v1/commit` would have answered it.
fn answered(outcome: CommitOutcome) -> Result<bool, RpcError> {
    match outcome {
        CommitOutcome::Applied(applied) => Ok(applied),
        CommitOutcome::Refused { status, error } => Err(RpcError::Status(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error,
        )),
    }
}

impl RpcError {
    /// This failure of a whole batch, as the outcome of one of its commits: what callers test
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

    fn flying(client: &NodeClient, addr: &str) -> usize {
        let nodes = client.gathering().nodes.lock().unwrap();
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
    /// commits fly again, one at a time, once the calls that were in the air have ended.
    #[tokio::test]
    async fn callers_that_give_up_free_their_slots() {
        let (addr, _held) = silent_node().await;
        let timeout = Duration::from_millis(300);
        let client = NodeClient::new(ClusterSecret::new("s".repeat(32)), timeout);
        let callers: Vec<_> = (0..FLIGHTS + 3)
            .map(|_| {
                let (client, addr) = (client.clone(), addr.clone());
                tokio::spawn(async move { commit(&client, &addr, Bytes::from_static(b"{}")).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(flying(&client, &addr), FLIGHTS, "the rest queued");
        for caller in &callers {
            caller.abort();
        }
        tokio::time::sleep(timeout * 3).await;
        assert_eq!(flying(&client, &addr), 0, "every slot was given back");

        let lone = commit(&client, &addr, Bytes::from_static(b"{}")).await;
        assert!(matches!(lone, Err(RpcError::Timeout)), "{lone:?}");
        assert_eq!(flying(&client, &addr), 0);
    }
}
