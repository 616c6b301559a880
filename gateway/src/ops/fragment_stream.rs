//! A fragment's frames as the read path receives them: from the record itself (inline), from a
//! node's response body, or from a connection that carries nothing else.

use crate::ops::frame::Frame;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use node_rpc::client::FragmentBody;
use node_rpc::raw::RawFragment;
use tokio::io::AsyncReadExt;

/// A fragment's frames, read in order.
pub enum FragmentStream {
    Inline(Bytes),
    /// `chunk`: what is left of the last piece of the body received.
    Remote {
        body: Incoming,
        chunk: Bytes,
    },
    /// A connection that carries only the fragment's bytes: each frame is read straight into a
    /// buffer of its own.
    Raw(RawFragment),
}

impl From<FragmentBody> for FragmentStream {
    fn from(body: FragmentBody) -> FragmentStream {
        match body {
            FragmentBody::Http { body, chunk } => FragmentStream::Remote { body, chunk },
            FragmentBody::Raw(io) => FragmentStream::Raw(io),
        }
    }
}

impl FragmentStream {
    /// The next `len` bytes, or `None` if the stream broke or ended.
    pub async fn read_frame(&mut self, len: usize) -> Option<Frame> {
        match self {
            FragmentStream::Inline(bytes) => {
                (bytes.len() >= len).then(|| Frame::from(bytes.split_to(len)))
            }
            FragmentStream::Remote { body, chunk } => {
                let mut frame = Frame::default();
                while frame.len() < len {
                    if chunk.is_empty() {
                        if let Ok(data) = body.frame().await?.ok()?.into_data() {
                            *chunk = data;
                        }
                        continue;
                    }
                    let take = (len - frame.len()).min(chunk.len());
                    frame.push(chunk.split_to(take));
                }
                Some(frame)
            }
            FragmentStream::Raw(io) => {
                let mut buf = BytesMut::with_capacity(len);
                let mut frame = (&mut *io).take(len as u64);
                while buf.len() < len {
                    if frame.read_buf(&mut buf).await.ok()? == 0 {
                        return None;
                    }
                }
                Some(Frame::from(buf.freeze()))
            }
        }
    }
}
