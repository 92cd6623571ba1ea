//! The HTTP listener's protection against clients that hold connections (slow headers,
//! idle keep-alive, too many at once) and against handler bugs: everything here speaks
//! raw TCP to the real serve loop on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use breakwater::config::ConnectionLimits;
use breakwater::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A guard against a hung test, not a synchronisation: every wait below ends on an event
/// (a response, an EOF) long before it.
const HANG_GUARD: Duration = Duration::from_secs(20);

struct Server {
    address: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(limits: ConnectionLimits) -> Self {
        let router = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/echo",
                axum::routing::post(|body: String| async move { body }),
            )
            .route(
                "/panic",
                get(|| async {
                    // Opaque to the compiler, like the real bug would be.
                    std::hint::black_box(None::<&str>).expect("a bug in a handler")
                }),
            );
        let metrics = Arc::new(Metrics::new());
        let router = breakwater::http::finish(router, metrics.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let task = {
            let stop = stop.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                breakwater::http::serve(
                    listener,
                    router,
                    limits,
                    metrics,
                    Duration::from_secs(2),
                    async move { stop.cancelled().await },
                )
                .await;
            })
        };
        Self {
            address,
            metrics,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(HANG_GUARD, self.task)
            .await
            .expect("server stops")
            .expect("join");
    }
}

fn limits(header_read: Duration, idle: Duration, max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: header_read,
        idle_timeout: idle,
        max_connections,
    }
}

const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: breakwater\r\n\r\n";

/// Reads one response to a request for `/healthz` (its body is "ok").
async fn read_healthz_response(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(HANG_GUARD, stream.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response: {response:?}");
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(response).expect("utf-8")
}

/// Waits until the server closes the connection; what it sent before is returned.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    let result = tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut rest))
        .await
        .expect("the server closed the connection");
    // A reset is as closed as an orderly EOF.
    if let Err(error) = result {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    }
    rest
}

#[tokio::test]
async fn a_panicking_handler_costs_one_500_and_the_server_keeps_answering() {
    let server = Server::start(ConnectionLimits::default()).await;
    let client = reqwest::Client::new();
    let broken = client
        .get(format!("http://{}/panic", server.address))
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(broken.status(), 500);
    let body: serde_json::Value = broken.json().await.expect("json");
    assert_eq!(body["error"], "internal error; see breakwater's log");
    let next = client
        .get(format!("http://{}/healthz", server.address))
        .send()
        .await
        .expect("request");
    assert_eq!(next.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected_after_the_header_timeout() {
    let server = Server::start(limits(
        Duration::from_millis(300),
        Duration::from_secs(600),
        16,
    ))
    .await;
    let mut slow = TcpStream::connect(server.address).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: breakwater\r\nX-Slow: ")
        .await
        .expect("write");
    let answered = read_until_closed(&mut slow).await;
    assert!(
        !String::from_utf8_lossy(&answered).contains("\r\n\r\nok"),
        "an incomplete request was served"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is long, so only the idle timeout can close the connection.
    let server = Server::start(limits(
        Duration::from_secs(600),
        Duration::from_millis(300),
        16,
    ))
    .await;
    let mut idle = TcpStream::connect(server.address).await.expect("connect");
    idle.write_all(GET_HEALTHZ).await.expect("write");
    let response = read_healthz_response(&mut idle).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(read_until_closed(&mut idle).await.is_empty());
    assert_eq!(server.metrics.http_connections_open(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_waiting_for_its_next_request_is_closed_by_the_header_timeout() {
    let server = Server::start(limits(
        Duration::from_millis(300),
        Duration::from_secs(600),
        16,
    ))
    .await;
    let mut idle = TcpStream::connect(server.address).await.expect("connect");
    idle.write_all(GET_HEALTHZ).await.expect("write");
    read_healthz_response(&mut idle).await;
    assert!(read_until_closed(&mut idle).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn an_upload_that_stalls_after_its_headers_is_cut_off_by_the_idle_timeout() {
    // Headers complete, so the header timeout no longer applies; the body never comes.
    let server = Server::start(limits(
        Duration::from_secs(600),
        Duration::from_millis(300),
        16,
    ))
    .await;
    let mut stalled = TcpStream::connect(server.address).await.expect("connect");
    stalled
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: breakwater\r\nContent-Length: 100\r\n\r\nonly a part",
        )
        .await
        .expect("write");
    read_until_closed(&mut stalled).await;
    assert_eq!(server.metrics.http_connections_open(), 0);
    server.stop().await;
}

#[tokio::test]
async fn with_the_connection_cap_reached_a_new_client_waits_and_is_served_when_a_slot_frees() {
    let server = Server::start(limits(
        Duration::from_secs(600),
        Duration::from_secs(600),
        1,
    ))
    .await;
    let mut holder = TcpStream::connect(server.address).await.expect("connect");
    holder.write_all(GET_HEALTHZ).await.expect("write");
    read_healthz_response(&mut holder).await;
    assert_eq!(
        server.metrics.http_connections_open(),
        1,
        "the cap is taken"
    );

    // The kernel completes the handshake; breakwater accepts it only when a slot frees.
    let mut waiting = TcpStream::connect(server.address).await.expect("connect");
    waiting.write_all(GET_HEALTHZ).await.expect("write");
    let waiting = tokio::spawn(async move { read_healthz_response(&mut waiting).await });

    drop(holder);
    let response = tokio::time::timeout(HANG_GUARD, waiting)
        .await
        .expect("served once the slot freed")
        .expect("join");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(server.metrics.http_connections_open(), 1);
    server.stop().await;
}

#[tokio::test]
async fn silent_connections_filling_the_cap_cannot_lock_out_a_health_check() {
    // The reported lock-out: connections that never send a byte held every slot. Here
    // they fill the cap and the header timeout frees it; nobody closes them by hand.
    let server = Server::start(limits(
        Duration::from_millis(300),
        Duration::from_secs(600),
        2,
    ))
    .await;
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(server.address).await.expect("connect"));
    }
    let mut health = TcpStream::connect(server.address).await.expect("connect");
    health.write_all(GET_HEALTHZ).await.expect("write");
    let response = read_healthz_response(&mut health).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for mut stream in silent {
        assert!(read_until_closed(&mut stream).await.is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_server_closes_idle_connections_instead_of_waiting_for_them() {
    let server = Server::start(ConnectionLimits::default()).await;
    let mut idle = TcpStream::connect(server.address).await.expect("connect");
    idle.write_all(GET_HEALTHZ).await.expect("write");
    read_healthz_response(&mut idle).await;
    server.stop().await;
    assert!(read_until_closed(&mut idle).await.is_empty());
}

/// Kills the child process when the test ends, however it ends.
#[cfg(target_os = "linux")]
struct KillOnDrop(std::process::Child);

#[cfg(target_os = "linux")]
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real process started with a low soft open-file limit (the common 1024, here 256)
/// raises it to the hard limit before it serves.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_binary_raises_its_soft_open_file_limit_to_the_hard_limit_at_start() {
    use std::io::BufRead;
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = KillOnDrop(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -Sn 256 && exec \"$0\" demo --listen 127.0.0.1:0 --data \"$1\"")
            .arg(env!("CARGO_BIN_EXE_breakwater"))
            .arg(data.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start breakwater"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    // The console URL is printed once the listener is up, after start-up.
    let serving = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.trim().starts_with("Console:"))
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(60), serving)
            .await
            .expect("breakwater starts")
            .expect("read stdout"),
        "no console URL printed"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.0.id()))
        .expect("read /proc limits");
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("an open-files line");
    let numbers: Vec<&str> = open_files
        .trim_start_matches("Max open files")
        .split_whitespace()
        .take(2)
        .collect();
    assert_eq!(numbers.len(), 2, "{open_files}");
    assert_eq!(
        numbers[0], numbers[1],
        "soft limit not raised: {open_files}"
    );
    assert_ne!(numbers[0], "256", "{open_files}");
}
