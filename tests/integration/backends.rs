//! The webhook backend against a real HTTP receiver that verifies signatures, and the
//! command backend against real scripts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use breakwater::backends::WebhookBackend;
use breakwater::backends::webhook::{PLAN_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use breakwater::config::{Secret, WebhookBackendConfig};
use breakwater::core::backend::{
    Action, BackendErrorKind, DeployBackend, Operation, Outcome, RollbackCall,
};
use breakwater::core::deploy::{Environment, Revision, ServiceName, Target};
use breakwater::core::policy::{Actor, Principal};
use breakwater::core::rollback::PlanId;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use url::Url;

const SECRET: &str = "receiver-shared-secret";

fn call() -> RollbackCall {
    RollbackCall {
        plan_id: PlanId::generate(),
        target: Target::new(
            ServiceName::parse("checkout").expect("service"),
            Environment::parse("production").expect("environment"),
        ),
        from: Revision {
            id: "41".into(),
            version: "v1.4.0".into(),
        },
        to: Revision {
            id: "40".into(),
            version: "v1.3.2".into(),
        },
        requested_by: Actor::new(
            Principal::parse("slack:U0123").expect("principal"),
            "Alice Example",
        ),
        reason: "error rate > 5%; rm -rf / && echo pwned".into(),
        disable_auto_sync: false,
        action: Action::Rollback,
    }
}

/// Collects progress lines.
#[derive(Default)]
struct Progress(Mutex<Vec<String>>);

impl Progress {
    fn report(&self) -> impl Fn(String) + Send + Sync + '_ {
        |line| self.0.lock().expect("lock").push(line)
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

// ----------------------------------------------------------------------------------------
// The webhook receiver.

fn verify(secret: &str, message: &[u8], header: Option<&str>) -> bool {
    let Some(hex_signature) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(message);
    mac.verify_slice(&signature).is_ok()
}

#[derive(Clone, Debug)]
struct Request {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    verified: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// How the receiver answers the rollback POST.
enum PostAnswer {
    Reply(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// Accept the connection, never answer.
    Hang,
}

/// A deployment tool that receives breakwater's webhooks: it verifies every signature as
/// a real receiver must (over the raw body for the POST, over the timestamp for status
/// requests) and answers from a script.
struct Receiver {
    secret: &'static str,
    post: PostAnswer,
    /// Answers to status requests in order; the last one repeats.
    polls: Mutex<VecDeque<(u16, &'static str)>>,
    requests: Mutex<Vec<Request>>,
}

impl Receiver {
    fn new(post: PostAnswer) -> Self {
        Self {
            secret: SECRET,
            post,
            polls: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
        }
    }

    fn polls(self, answers: &[(u16, &'static str)]) -> Self {
        *self.polls.lock().expect("lock") = answers.iter().copied().collect();
        self
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    fn posts(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::POST)
            .collect()
    }

    async fn spawn(self) -> (Arc<Self>, Url) {
        let receiver = Arc::new(self);
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&receiver));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = Url::parse(&format!("http://{address}/hooks/rollback")).expect("url");
        (receiver, url)
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let verified = if method == Method::POST {
        verify(receiver.secret, &body, signature)
    } else {
        let timestamp = headers
            .get(TIMESTAMP_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let fresh = timestamp
            .parse::<i64>()
            .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 300);
        fresh && verify(receiver.secret, timestamp.as_bytes(), signature)
    };
    receiver.requests.lock().expect("lock").push(Request {
        method: method.clone(),
        path: uri.path().to_owned(),
        headers,
        body,
        verified,
    });
    if !verified {
        return (StatusCode::UNAUTHORIZED, "signature mismatch").into_response();
    }
    if method == Method::POST {
        match &receiver.post {
            PostAnswer::Reply(status, headers, body) => {
                let mut response =
                    (StatusCode::from_u16(*status).expect("status"), *body).into_response();
                for (name, value) in headers {
                    response
                        .headers_mut()
                        .insert(*name, value.parse().expect("header value"));
                }
                response
            }
            PostAnswer::Hang => std::future::pending().await,
        }
    } else {
        let (status, body) = {
            let mut polls = receiver.polls.lock().expect("lock");
            if polls.len() > 1 {
                polls.pop_front()
            } else {
                polls.front().copied()
            }
        }
        .unwrap_or((404, "no such operation"));
        (StatusCode::from_u16(status).expect("status"), body).into_response()
    }
}

fn webhook(url: &Url, secret: &str, timeout: Duration) -> WebhookBackend {
    WebhookBackend::new(
        "deployer",
        &WebhookBackendConfig {
            url: url.clone(),
            secret: Secret::new(secret),
            timeout,
            poll_interval: Duration::from_millis(10),
        },
    )
    .expect("client")
}

#[tokio::test]
async fn webhook_200_finishes_the_rollback_with_a_signed_request() {
    let (receiver, url) = Receiver::new(PostAnswer::Reply(
        200,
        vec![("content-type", "application/json")],
        r#"{"message": "deployer rolled checkout back to v1.3.2"}"#,
    ))
    .spawn()
    .await;
    let call = call();

    let operation = webhook(&url, SECRET, Duration::from_secs(5))
        .rollback(&call)
        .await
        .expect("accepted");

    assert_eq!(
        operation.finished,
        Some(Outcome::Succeeded(
            "deployer rolled checkout back to v1.3.2".into()
        ))
    );
    let posts = receiver.posts();
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert!(post.verified, "the receiver could not verify the signature");
    assert_eq!(post.path, "/hooks/rollback");
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(
        post.header(PLAN_ID_HEADER),
        Some(call.plan_id.to_string().as_str())
    );
    let body = post.json();
    assert_eq!(body["plan_id"], call.plan_id.to_string());
    assert_eq!(body["service"], "checkout");
    assert_eq!(body["environment"], "production");
    assert_eq!(body["from"], "v1.4.0");
    assert_eq!(body["to"], "v1.3.2");
    assert_eq!(body["from_revision"], "41");
    assert_eq!(body["to_revision"], "40");
    assert_eq!(body["requested_by"], "slack:U0123");
    assert_eq!(body["requested_by_name"], "Alice Example");
    assert_eq!(body["reason"], call.reason);
    assert!(body["requested_at"].is_string());
}

#[tokio::test]
async fn webhook_signature_covers_the_exact_body_bytes() {
    let (receiver, url) = Receiver::new(PostAnswer::Reply(204, vec![], ""))
        .spawn()
        .await;
    webhook(&url, SECRET, Duration::from_secs(5))
        .rollback(&call())
        .await
        .expect("accepted");

    let post = &receiver.posts()[0];
    let signature = post.header(SIGNATURE_HEADER);
    assert!(verify(SECRET, &post.body, signature));
    // The same JSON in other bytes, or other bytes with the same length, do not verify:
    // receivers must check the raw body before parsing it.
    let reencoded = serde_json::to_vec_pretty(&post.json()).expect("json");
    assert!(!verify(SECRET, &reencoded, signature));
    let mut tampered = post.body.to_vec();
    let at = tampered.len() - 2;
    tampered[at] ^= 0x01;
    assert!(!verify(SECRET, &tampered, signature));
    assert!(!verify("another-secret", &post.body, signature));
}

#[tokio::test]
async fn webhook_with_a_forged_secret_is_refused_as_unauthorized() {
    let (receiver, url) = Receiver::new(PostAnswer::Reply(200, vec![], "ok"))
        .spawn()
        .await;

    let error = webhook(&url, "forged-secret", Duration::from_secs(5))
        .rollback(&call())
        .await
        .expect_err("refused");

    assert_eq!(error.kind, BackendErrorKind::Unauthorized);
    assert!(
        error
            .message
            .contains("HTTP 401 Unauthorized: signature mismatch"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("backends.deployer.secret"),
        "{}",
        error.message
    );
    let posts = receiver.posts();
    assert_eq!(posts.len(), 1);
    assert!(!posts[0].verified);
}

#[tokio::test]
async fn webhook_202_is_followed_at_its_location_until_it_succeeds() {
    let (receiver, url) = Receiver::new(PostAnswer::Reply(
        202,
        vec![("location", "operations/op-7")],
        "",
    ))
    .polls(&[
        (200, r#"{"status": "running", "message": "Scaling up 1/3"}"#),
        (200, r#"{"status": "running", "message": "Scaling up 1/3"}"#),
        (200, r#"{"status": "running", "message": "Scaling up 3/3"}"#),
        (
            200,
            r#"{"status": "succeeded", "message": "checkout is on v1.3.2"}"#,
        ),
    ])
    .spawn()
    .await;

    let operation = webhook(&url, SECRET, Duration::from_secs(5))
        .rollback(&call())
        .await
        .expect("accepted");
    assert_eq!(operation.finished, None);
    let location = format!("http://{}/hooks/operations/op-7", url.authority());
    assert_eq!(operation.handle["location"], location);

    // Followed by a freshly built backend from the stored operation, as after a restart.
    let stored: Operation =
        serde_json::from_str(&serde_json::to_string(&operation).expect("json")).expect("json");
    let progress = Progress::default();
    let outcome = webhook(&url, SECRET, Duration::from_secs(5))
        .wait(&stored, &progress.report())
        .await
        .expect("followed");

    assert_eq!(outcome, Outcome::Succeeded("checkout is on v1.3.2".into()));
    assert_eq!(progress.lines(), ["Scaling up 1/3", "Scaling up 3/3"]);
    let polls: Vec<Request> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::GET)
        .collect();
    assert_eq!(polls.len(), 4);
    assert!(
        polls
            .iter()
            .all(|r| r.verified && r.path == "/hooks/operations/op-7")
    );
    assert_eq!(receiver.posts().len(), 1);
}

#[tokio::test]
async fn webhook_polled_failure_is_reported_with_its_message() {
    let (_receiver, url) = Receiver::new(PostAnswer::Reply(202, vec![("location", "/ops/9")], ""))
        .polls(&[
            (200, r#"{"status": "running"}"#),
            (
                200,
                r#"{"status": "failed", "message": "image v1.3.2 was garbage-collected"}"#,
            ),
        ])
        .spawn()
        .await;
    let backend = webhook(&url, SECRET, Duration::from_secs(5));

    let operation = backend.rollback(&call()).await.expect("accepted");
    let outcome = backend.wait(&operation, &|_| {}).await.expect("followed");

    assert_eq!(
        outcome,
        Outcome::Failed("image v1.3.2 was garbage-collected".into())
    );
}

#[tokio::test]
async fn webhook_status_polls_retry_transient_errors() {
    let (receiver, url) = Receiver::new(PostAnswer::Reply(202, vec![("location", "/ops/1")], ""))
        .polls(&[
            (503, "warming up"),
            (502, "bad gateway"),
            (200, r#"{"status": "succeeded"}"#),
        ])
        .spawn()
        .await;
    let backend = webhook(&url, SECRET, Duration::from_secs(5));

    let operation = backend.rollback(&call()).await.expect("accepted");
    let outcome = backend.wait(&operation, &|_| {}).await.expect("followed");

    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    assert_eq!(receiver.requests().len(), 4);
}

#[tokio::test]
async fn webhook_500_is_an_error_quoting_the_body_and_is_not_repeated() {
    let (receiver, url) = Receiver::new(PostAnswer::Reply(
        500,
        vec![],
        "database is locked\n    at deployer::rollback (src/rollback.rs:42)\n",
    ))
    .spawn()
    .await;

    let error = webhook(&url, SECRET, Duration::from_secs(5))
        .rollback(&call())
        .await
        .expect_err("failed");

    assert_eq!(error.kind, BackendErrorKind::Unavailable);
    assert!(
        error.message.contains(
            "HTTP 500 Internal Server Error: database is locked at deployer::rollback \
             (src/rollback.rs:42)"
        ),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("may or may not have started"),
        "{}",
        error.message
    );
    assert_eq!(
        receiver.posts().len(),
        1,
        "a rollback must never be re-sent"
    );
}

#[tokio::test]
async fn webhook_that_never_answers_times_out() {
    let (receiver, url) = Receiver::new(PostAnswer::Hang).spawn().await;

    let error = webhook(&url, SECRET, Duration::from_millis(200))
        .rollback(&call())
        .await
        .expect_err("timed out");

    assert_eq!(error.kind, BackendErrorKind::Timeout);
    assert!(
        error.message.contains("did not answer within 200ms"),
        "{}",
        error.message
    );
    assert_eq!(receiver.posts().len(), 1);
}

#[tokio::test]
async fn webhook_that_keeps_running_past_the_timeout_times_out_with_the_last_status() {
    let (_receiver, url) = Receiver::new(PostAnswer::Reply(202, vec![("location", "/ops/3")], ""))
        .polls(&[(
            200,
            r#"{"status": "running", "message": "Waiting for 2 pods"}"#,
        )])
        .spawn()
        .await;
    let backend = webhook(&url, SECRET, Duration::from_millis(200));

    let operation = backend.rollback(&call()).await.expect("accepted");
    let error = backend
        .wait(&operation, &|_| {})
        .await
        .expect_err("timed out");

    assert_eq!(error.kind, BackendErrorKind::Timeout);
    assert!(
        error.message.contains("last reported: Waiting for 2 pods"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn webhook_that_cannot_be_reached_says_nothing_was_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let url = Url::parse(&format!("http://{address}/rollback")).expect("url");

    let error = webhook(&url, SECRET, Duration::from_secs(5))
        .rollback(&call())
        .await
        .expect_err("unreachable");

    assert_eq!(error.kind, BackendErrorKind::Unavailable);
    assert!(
        error.message.contains("nothing was sent"),
        "{}",
        error.message
    );
}

// ----------------------------------------------------------------------------------------
// The command backend.

#[cfg(unix)]
mod command {
    use std::path::{Path, PathBuf};

    use breakwater::backends::CommandBackend;
    use breakwater::config::CommandBackendConfig;

    use super::*;
    use crate::support::eventually;

    /// A script in a temporary directory. Scripts run as `/bin/sh SCRIPT …` rather than
    /// directly: in a test binary that spawns processes from many threads, a freshly
    /// written executable can fail to start with "text file busy" because another
    /// thread's fork briefly inherited its write handle.
    fn script(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        path.to_str().expect("utf-8 path").to_owned()
    }

    fn backend(argv: &[&str], timeout: Duration, working_dir: Option<PathBuf>) -> CommandBackend {
        CommandBackend::new(
            "script",
            &CommandBackendConfig {
                argv: argv.iter().map(|a| (*a).to_owned()).collect(),
                timeout,
                working_dir,
            },
        )
    }

    #[tokio::test]
    async fn command_exit_zero_succeeds_with_the_last_stdout_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = script(
            dir.path(),
            "ok.sh",
            "echo \"rolling back $1\"\necho 'warming caches' >&2\necho \"$1 is on $2\"\n",
        );
        let backend = backend(
            &["/bin/sh", &script, "{service}", "{to}"],
            Duration::from_secs(10),
            None,
        );

        let operation = backend.rollback(&call()).await.expect("ran");

        let outcome = Outcome::Succeeded("checkout is on v1.3.2".into());
        assert_eq!(operation.finished, Some(outcome.clone()));
        assert_eq!(backend.wait(&operation, &|_| {}).await, Ok(outcome));
    }

    #[tokio::test]
    async fn command_exit_one_fails_with_the_status_and_last_stderr_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = script(
            dir.path(),
            "fail.sh",
            "i=1\nwhile [ $i -le 15 ]; do echo \"error line $i\" >&2; i=$((i+1)); done\nexit 1",
        );
        let backend = backend(&["/bin/sh", &script], Duration::from_secs(10), None);

        let operation = backend.rollback(&call()).await.expect("ran");

        let Some(Outcome::Failed(message)) = operation.finished else {
            panic!("expected a failure, got {:?}", operation.finished);
        };
        assert!(message.contains("exited with status 1"), "{message}");
        let shown: Vec<&str> = message.lines().skip(1).collect();
        let expected: Vec<String> = (6..=15).map(|i| format!("error line {i}")).collect();
        assert_eq!(shown, expected, "{message}");
    }

    #[tokio::test]
    async fn command_arguments_arrive_intact_without_a_shell() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = script(
            dir.path(),
            "args.sh",
            "printf '%s\\0' \"$@\" > args\nenv | grep '^BREAKWATER_' | sort > env",
        );
        let backend = backend(
            &[
                "/bin/sh",
                &script,
                "{reason}",
                "--to={to}",
                "{requested_by}",
                "{service} {environment}",
                "$(touch pwned)",
            ],
            Duration::from_secs(10),
            Some(dir.path().to_owned()),
        );
        let call = call();

        let operation = backend.rollback(&call).await.expect("ran");
        assert!(
            matches!(operation.finished, Some(Outcome::Succeeded(_))),
            "{operation:?}"
        );

        let args = std::fs::read(dir.path().join("args")).expect("args written");
        let args: Vec<&str> = std::str::from_utf8(&args)
            .expect("utf-8")
            .split_terminator('\0')
            .collect();
        assert_eq!(
            args,
            [
                "error rate > 5%; rm -rf / && echo pwned",
                "--to=v1.3.2",
                "slack:U0123",
                "checkout production",
                "$(touch pwned)",
            ]
        );
        assert!(!dir.path().join("pwned").exists());
        let env = std::fs::read_to_string(dir.path().join("env")).expect("env written");
        for expected in [
            "BREAKWATER_ENVIRONMENT=production",
            "BREAKWATER_FROM=v1.4.0",
            &format!("BREAKWATER_PLAN_ID={}", call.plan_id),
            "BREAKWATER_SERVICE=checkout",
            "BREAKWATER_TO=v1.3.2",
            "BREAKWATER_TO_REVISION=40",
        ] {
            assert!(
                env.lines().any(|line| line == expected),
                "{expected} in {env}"
            );
        }
    }

    /// Whether a process has ended (gone, or a zombie nobody reaped yet).
    fn ended(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn command_timeout_kills_the_command_and_what_it_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = script(
            dir.path(),
            "slow.sh",
            "echo 'starting rollout' >&2\nsleep 30 &\necho $! > sleep.pid\nwait",
        );
        let backend = backend(
            &["/bin/sh", &script],
            Duration::from_millis(300),
            Some(dir.path().to_owned()),
        );

        let error = backend.rollback(&call()).await.expect_err("timed out");

        assert_eq!(error.kind, BackendErrorKind::Timeout);
        assert!(error.message.contains("within 300ms"), "{}", error.message);
        assert!(
            error.message.contains("starting rollout"),
            "{}",
            error.message
        );
        let pid = std::fs::read_to_string(dir.path().join("sleep.pid")).expect("pid written");
        let pid = pid.trim();
        eventually(format_args!("sleep {pid} to end"), async || {
            ended(pid).then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn command_that_cannot_start_is_unavailable_with_the_os_error() {
        let backend = backend(
            &["/nonexistent/breakwater-rollback", "{service}"],
            Duration::from_secs(10),
            None,
        );

        let error = backend.rollback(&call()).await.expect_err("not started");

        assert_eq!(error.kind, BackendErrorKind::Unavailable);
        assert!(
            error.message.contains("No such file or directory"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("nothing was run"),
            "{}",
            error.message
        );
    }
}
