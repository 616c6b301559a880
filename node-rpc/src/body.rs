//! HTTP bodies shared by the node server, its client and the gateway.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// The body type every Tessera HTTP message uses: boxed, so handlers can stream or send bytes alike.
pub type HttpBody = BoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> HttpBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> HttpBody {
    full(Bytes::new())
}

/// A body fed by a channel, so that a producer task can stream with backpressure. A producer that
/// sends an error ends the body with that error (the peer then sees a broken message, not a short one).
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    remaining: Option<u64>,
}

impl ChannelBody {
    /// A channel holding at most `depth` chunks; `len` is announced as the exact size when known.
    pub fn new(
        depth: usize,
        len: Option<u64>,
    ) -> (mpsc::Sender<Result<Bytes, std::io::Error>>, ChannelBody) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, ChannelBody { rx, remaining: len })
    }

    pub fn boxed(self) -> HttpBody {
        BoxBody::new(self)
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| {
            chunk.map(|r| {
                r.map(|bytes| {
                    if let Some(left) = self.remaining.as_mut() {
                        *left = left.saturating_sub(bytes.len() as u64);
                    }
                    Frame::data(bytes)
                })
            })
        })
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
