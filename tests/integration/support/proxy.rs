//! A loopback TCP proxy the test can cut and restore, standing in for a database that goes
//! away and comes back without stopping the machine's PostgreSQL. Cut, it drops every
//! open connection and closes each new one as soon as it is accepted (a client sees the
//! connection end during its handshake); restored, it forwards again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub(crate) struct CuttableProxy {
    pub address: SocketAddr,
    /// `Some` while forwarding: cancelling it drops the connections it carries.
    up: Arc<Mutex<Option<CancellationToken>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let up = Arc::new(Mutex::new(Some(CancellationToken::new())));
        let accepting = {
            let up = up.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Some(alive) = up.lock().expect("lock").clone() else {
                        drop(client);
                        continue;
                    };
                    tokio::spawn(forward(client, upstream, alive));
                }
            })
        };
        Self {
            address,
            up,
            accepting,
        }
    }

    /// The database goes away: open connections drop, new ones are closed at once.
    pub(crate) fn cut(&self) {
        if let Some(alive) = self.up.lock().expect("lock").take() {
            alive.cancel();
        }
    }

    /// The database is back.
    pub(crate) fn restore(&self) {
        let mut up = self.up.lock().expect("lock");
        if up.is_none() {
            *up = Some(CancellationToken::new());
        }
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
        self.accepting.abort();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, alive: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = alive.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}
