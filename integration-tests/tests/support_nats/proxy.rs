//! A loopback TCP proxy in front of a NATS server that can hold back the
//! server's messages once they reach a mark, as a slow or stalled server would.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards `127.0.0.1:<port>` to `upstream`. Server-to-client bytes pause
/// for `pause` once `mark` has been seen `after` times (counted over all
/// connections), then flow again.
pub struct StallingProxy {
    pub port: u16,
    seen: Arc<AtomicUsize>,
}

impl StallingProxy {
    pub async fn start(upstream: u16, mark: &'static [u8], after: usize, pause: Duration) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut stalled = false;
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let hits = buf[..n].windows(mark.len()).filter(|w| *w == mark).count();
                        let total = count.fetch_add(hits, Ordering::SeqCst) + hits;
                        if !stalled && total >= after {
                            stalled = true;
                            tokio::time::sleep(pause).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        StallingProxy { port, seen }
    }

    /// How often the mark went through.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}
