//! A loopback TCP proxy the test can cut and restore, standing in for a database that goes
//! away and comes back without stopping the machine's PostgreSQL. Cut, it closes its
//! listening socket (new connections are refused, as by a stopped server) and drops
//! every open connection; restored, it listens on the same address and forwards again.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub(crate) struct CuttableProxy {
    pub address: SocketAddr,
    upstream: SocketAddr,
    /// `Some` while forwarding: cancelling it closes the listener and every connection.
    up: Mutex<Option<CancellationToken>>,
}

impl CuttableProxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let alive = CancellationToken::new();
        tokio::spawn(serve(listener, upstream, alive.clone()));
        Self {
            address,
            upstream,
            up: Mutex::new(Some(alive)),
        }
    }

    /// The database goes away: connections drop, new ones are refused.
    pub(crate) fn cut(&self) {
        if let Some(alive) = self.up.lock().expect("lock").take() {
            alive.cancel();
        }
    }

    /// The database is back, at the same address.
    pub(crate) async fn restore(&self) {
        if self.up.lock().expect("lock").is_some() {
            return;
        }
        // The old listener closes asynchronously once its task sees the cancellation.
        let listener = super::eventually(
            format_args!("listening on {} again", self.address),
            async || TcpListener::bind(self.address).await,
        )
        .await;
        let alive = CancellationToken::new();
        tokio::spawn(serve(listener, self.upstream, alive.clone()));
        *self.up.lock().expect("lock") = Some(alive);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn serve(listener: TcpListener, upstream: SocketAddr, alive: CancellationToken) {
    loop {
        tokio::select! {
            _ = alive.cancelled() => return,
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { return };
                tokio::spawn(forward(client, upstream, alive.clone()));
            }
        }
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
