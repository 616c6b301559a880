//! The accept loop survives running out of file descriptors and serves again once some are
//! free. A test binary of its own: it lowers the whole process's descriptor limit.

use listener::{Limits, Listener};
use std::fs::File;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn set_descriptor_limit(n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit only reads the struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

#[tokio::test]
async fn accepting_backs_off_while_descriptors_are_exhausted_and_recovers() {
    set_descriptor_limit(128);
    let listener = Listener::new(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Limits::default(),
    );
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (mut stream, _tracker) = listener.accept().await;
            tokio::spawn(async move {
                let mut buf = [0; 16];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    let _ = stream.write_all(&buf[..n]).await;
                }
            });
        }
    });
    // Take every descriptor left, then give one back for the client's socket: the server's
    // accept has none for the connection it would hand out.
    let mut hog = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        hog.push(f);
    }
    hog.pop();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!server.is_finished(), "the accept loop ended on EMFILE");
    let mut answer = [0; 4];
    let early =
        tokio::time::timeout(Duration::from_millis(200), client.read_exact(&mut answer)).await;
    assert!(early.is_err(), "served without a descriptor?");
    hog.clear();
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut answer))
        .await
        .expect("not served once descriptors were free")
        .unwrap();
    assert_eq!(&answer, b"ping");
}
