//! The aws-chunked decoder (`PayloadReader` of a STREAMING-UNSIGNED-PAYLOAD-TRAILER body):
//! chunk headers with their extensions, chunk data, the CRLFs between them, and trailers.
//!
//! Input: 2 bytes of declared decoded length (big-endian), 1 byte that cuts the body into frames
//! of that many bytes (0: one frame) as the network would, then the body.
#![no_main]

use bytes::Bytes;
use futures::executor::block_on;
use gateway::fuzzing::payload::PayloadReader;
use gateway::fuzzing::auth::{Authenticated, Payload};
use http_body_util::{BodyExt, StreamBody};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, cut, body @ ..] = data else {
        return;
    };
    let decoded_len = u16::from_be_bytes([*a, *b]) as u64;
    let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = if *cut == 0 {
        vec![Ok(http_body::Frame::data(Bytes::copy_from_slice(body)))]
    } else {
        body.chunks(*cut as usize)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect()
    };
    let stream = StreamBody::new(futures::stream::iter(frames)).boxed();
    let auth = Authenticated {
        payload: Payload::Chunked {
            signed: false,
            trailer: true,
        },
        chunk_signer: None,
        presigned: false,
    };
    let mut reader = PayloadReader::with_body(stream, auth, decoded_len, None);
    let mut decoded = 0u64;
    block_on(async {
        loop {
            match reader.next().await {
                Ok(Some(bytes)) => decoded += bytes.len() as u64,
                Ok(None) => {
                    // A body read to its end gave exactly the declared content, taken from it.
                    assert_eq!(decoded, decoded_len);
                    assert!(decoded <= body.len() as u64);
                    let _ = reader.trailer("x-amz-checksum-crc32");
                    break;
                }
                Err(_) => {
                    assert!(decoded <= decoded_len);
                    break;
                }
            }
        }
    });
});
