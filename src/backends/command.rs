//! The command backend: a rollback runs a program you configure, with the plan's details
//! filled into its arguments, and its exit status is the outcome.
//!
//! Placeholders (`{service}`, `{environment}`, `{from}`, `{to}`, `{from_revision}`,
//! `{to_revision}`, `{plan_id}`, `{requested_by}`, `{reason}`) are replaced inside each
//! argument separately and the program is started directly, never through a shell: a
//! value with spaces, quotes or `;` stays inside the one argument it was written in, and
//! a value that itself looks like `{to}` is not replaced again.
//!
//! The program also sees breakwater's environment plus `BREAKWATER_SERVICE`,
//! `BREAKWATER_ENVIRONMENT`, `BREAKWATER_FROM`, `BREAKWATER_TO`, `BREAKWATER_FROM_REVISION`,
//! `BREAKWATER_TO_REVISION`, `BREAKWATER_PLAN_ID` and `BREAKWATER_REQUESTED_BY`; stdin is
//! empty. Exit 0 is success (the last line on stdout describes it); anything else is a
//! failure shown with the last lines of stderr.
//!
//! The command runs to its end inside [`DeployBackend::rollback`], which returns an
//! operation that is already `finished`. There is nothing to follow afterwards and nothing
//! to resume after a restart, and a crash between "accepted" and "followed" cannot leave a
//! rollback that was reported as started but never ran. The caller must therefore give
//! `rollback` as long as the backend's `timeout`; the wait is asynchronous and does not
//! block the runtime. Dropping the call (shutdown, a cancelled task) kills the command.
//!
//! On Unix the command runs in its own process group, so that a timeout or cancellation
//! kills what a script started (`kubectl`, `sleep`, …) and not only the script itself.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::snippet;
use crate::config::CommandBackendConfig;
use crate::core::backend::{
    BackendError, BackendErrorKind, Capabilities, DeployBackend, Operation, Outcome, ProgressFn,
    RollbackCall,
};
use crate::core::deploy::{Deploy, Revision, Target};

/// How much of each output stream is kept while the command runs.
const TAIL_BYTES: usize = 8 * 1024;
/// How many lines of stderr, and at most how many bytes of them, a failure shows.
const STDERR_LINES: usize = 10;
const STDERR_MAX_BYTES: usize = 2048;
/// How long output is still read after the command exited: something it started in the
/// background may hold the pipes open indefinitely.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

pub struct CommandBackend {
    name: String,
    argv: Vec<String>,
    timeout: Duration,
    working_dir: Option<PathBuf>,
}

impl CommandBackend {
    pub fn new(name: &str, config: &CommandBackendConfig) -> Self {
        Self {
            name: name.to_owned(),
            argv: config.argv.clone(),
            timeout: config.timeout,
            working_dir: config.working_dir.clone(),
        }
    }

    /// The program and its arguments for one call, placeholders replaced.
    pub fn argv_for(&self, call: &RollbackCall) -> Vec<String> {
        self.argv.iter().map(|arg| render(arg, call)).collect()
    }

    async fn run(&self, call: &RollbackCall) -> Result<Outcome, BackendError> {
        let name = &self.name;
        let argv = self.argv_for(call);
        let Some((program, args)) = argv.split_first() else {
            return Err(BackendError::new(
                BackendErrorKind::Unavailable,
                format!("backends.{name}.argv is empty; nothing was run. Name the program to run"),
            ));
        };
        if let Some(dir) = &self.working_dir {
            let is_dir = tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir());
            if !is_dir {
                return Err(BackendError::new(
                    BackendErrorKind::Unavailable,
                    format!(
                        "the working directory {} of the {name} command does not exist; \
                         nothing was run. Check backends.{name}.working_dir",
                        dir.display()
                    ),
                ));
            }
        }

        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env("BREAKWATER_SERVICE", call.target.service.as_str())
            .env("BREAKWATER_ENVIRONMENT", call.target.environment.as_str())
            .env("BREAKWATER_FROM", &call.from.version)
            .env("BREAKWATER_TO", &call.to.version)
            .env("BREAKWATER_FROM_REVISION", &call.from.id)
            .env("BREAKWATER_TO_REVISION", &call.to.id)
            .env("BREAKWATER_PLAN_ID", call.plan_id.to_string())
            .env(
                "BREAKWATER_REQUESTED_BY",
                call.requested_by.principal.as_str(),
            );
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        #[cfg(unix)]
        command.process_group(0);

        tracing::info!(backend = %name, %program, target = %call.target, "running rollback command");
        let mut child = command.spawn().map_err(|e| {
            BackendError::new(
                BackendErrorKind::Unavailable,
                format!(
                    "could not start the {name} command {program:?} ({e}); nothing was run. \
                     Check backends.{name}.argv and that the program exists and is executable \
                     on the breakwater host"
                ),
            )
        })?;
        let mut group = GroupKiller(child.id());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let mut out = Tail::default();
        let mut err = Tail::default();
        // Set as soon as the command is reaped, so that a timeout that strikes while the
        // last output is read still reports how the command ended.
        let mut exited: Option<ExitStatus> = None;

        let ran = tokio::time::timeout(self.timeout, async {
            let reads = async { tokio::join!(drain(stdout, &mut out), drain(stderr, &mut err)) };
            let wait = child.wait();
            tokio::pin!(reads, wait);
            let mut read_all = false;
            let status = tokio::select! {
                status = &mut wait => status,
                _ = &mut reads => {
                    read_all = true;
                    (&mut wait).await
                }
            };
            if let Ok(status) = status {
                group.disarm();
                exited = Some(status);
                if !read_all {
                    let _ = tokio::time::timeout(OUTPUT_GRACE, &mut reads).await;
                }
            }
            status
        })
        .await;

        let status = match (ran, exited) {
            (Ok(status), _) => status.map_err(|e| {
                BackendError::new(
                    BackendErrorKind::Unavailable,
                    format!(
                        "lost track of the {name} command ({e}); the rollback of {} may or may \
                         not have happened. Check the deployment system",
                        call.target
                    ),
                )
            })?,
            (Err(_), Some(status)) => status,
            (Err(_), None) => {
                group.kill();
                let _ = child.kill().await;
                let mut message = format!(
                    "the {name} command did not finish within {} and was stopped, with \
                     everything it started; the rollback of {} may be half-done. Check the \
                     deployment system before trying again",
                    humantime::format_duration(self.timeout),
                    call.target
                );
                if let Some(lines) = err.last_lines() {
                    message.push_str(&format!(". Last lines of its stderr:\n{lines}"));
                }
                return Err(BackendError::new(BackendErrorKind::Timeout, message));
            }
        };

        if status.success() {
            Ok(Outcome::Succeeded(out.last_line().unwrap_or_else(|| {
                format!(
                    "the {name} command rolled {} back to {}",
                    call.target, call.to.version
                )
            })))
        } else {
            let ended = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => format!("ended abnormally ({status})"),
            };
            Ok(Outcome::Failed(match err.last_lines() {
                Some(lines) => {
                    format!("the {name} command {ended}; last lines of its stderr:\n{lines}")
                }
                None => format!("the {name} command {ended} and wrote nothing to stderr"),
            }))
        }
    }
}

#[async_trait]
impl DeployBackend for CommandBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "command"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            any_revision: true,
            config_diffs: false,
            own_history: false,
            resumable: false,
        }
    }

    async fn history(&self, _target: &Target) -> Result<Vec<Deploy>, BackendError> {
        Ok(Vec::new())
    }

    async fn current(&self, _target: &Target) -> Result<Option<Revision>, BackendError> {
        Ok(None)
    }

    async fn rollback(&self, call: &RollbackCall) -> Result<Operation, BackendError> {
        let started_at = Utc::now();
        let outcome = self.run(call).await?;
        Ok(Operation {
            target: call.target.clone(),
            to: call.to.clone(),
            started_at,
            handle: serde_json::Value::Null,
            finished: Some(outcome),
        })
    }

    async fn wait(
        &self,
        operation: &Operation,
        _progress: ProgressFn<'_>,
    ) -> Result<Outcome, BackendError> {
        operation.finished.clone().ok_or_else(|| {
            BackendError::unsupported(format!(
                "the rollback of {} by the {} command was interrupted and cannot be followed \
                 again; check the deployment system for whether it happened",
                operation.target, self.name
            ))
        })
    }
}

impl std::fmt::Debug for CommandBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandBackend")
            .field("name", &self.name)
            .field("argv", &self.argv)
            .field("timeout", &self.timeout)
            .field("working_dir", &self.working_dir)
            .finish()
    }
}

/// One argument with its placeholders replaced in a single pass. Unknown placeholders
/// (configuration validation reports them) stay as written.
fn render(template: &str, call: &RollbackCall) -> String {
    let mut rendered = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        rendered.push_str(&rest[..start]);
        let after = &rest[start..];
        let value = after
            .find('}')
            .and_then(|end| Some((placeholder(&after[1..end], call)?, end)));
        match value {
            Some((value, end)) => {
                rendered.push_str(&value);
                rest = &after[end + 1..];
            }
            None => {
                rendered.push('{');
                rest = &after[1..];
            }
        }
    }
    rendered.push_str(rest);
    rendered
}

fn placeholder(name: &str, call: &RollbackCall) -> Option<String> {
    Some(match name {
        "service" => call.target.service.as_str().to_owned(),
        "environment" => call.target.environment.as_str().to_owned(),
        "from" => call.from.version.clone(),
        "to" => call.to.version.clone(),
        "from_revision" => call.from.id.clone(),
        "to_revision" => call.to.id.clone(),
        "plan_id" => call.plan_id.to_string(),
        "requested_by" => call.requested_by.principal.as_str().to_owned(),
        "reason" => call.reason.clone(),
        _ => return None,
    })
}

/// The end of an output stream.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    /// Earlier output was dropped, so the first kept line may be a fragment.
    cut: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * TAIL_BYTES {
            let excess = self.bytes.len() - TAIL_BYTES;
            self.bytes.drain(..excess);
            self.cut = true;
        }
    }

    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.bytes);
        let mut lines: Vec<&str> = text.lines().collect();
        if self.cut && !lines.is_empty() {
            lines.remove(0);
        }
        lines
            .into_iter()
            .map(str::trim_end)
            .filter(|line| !line.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn last_line(&self) -> Option<String> {
        self.lines().last().map(|line| snippet(line, 300))
    }

    /// The last [`STDERR_LINES`] lines, at most [`STDERR_MAX_BYTES`] of them.
    fn last_lines(&self) -> Option<String> {
        let lines = self.lines();
        let mut kept: Vec<&str> = Vec::new();
        let mut size = 0;
        for line in lines.iter().rev().take(STDERR_LINES) {
            if size + line.len() + 1 > STDERR_MAX_BYTES {
                if kept.is_empty() {
                    // One enormous line: keep its end.
                    let mut start = line.len() - (STDERR_MAX_BYTES - 1);
                    while !line.is_char_boundary(start) {
                        start += 1;
                    }
                    kept.push(&line[start..]);
                }
                break;
            }
            size += line.len() + 1;
            kept.push(line);
        }
        kept.reverse();
        (!kept.is_empty()).then(|| kept.join("\n"))
    }
}

async fn drain(stream: Option<impl AsyncRead + Unpin>, tail: &mut Tail) {
    let Some(mut stream) = stream else { return };
    let mut buffer = [0u8; 4096];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        tail.push(&buffer[..read]);
    }
}

/// Kills the command's process group when dropped or asked, unless disarmed once the
/// command was reaped. `kill_on_drop` alone reaches only the direct child. The group id
/// is the child's pid, which cannot be reused while the child is unreaped.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn disarm(&mut self) {
        self.0 = None;
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            kill_group(pgid);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(unix)]
fn kill_group(pgid: u32) {
    use rustix::process::{Pid, Signal, kill_process_group};
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return;
    };
    match kill_process_group(pid, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(error) => {
            tracing::warn!(pgid, %error, "could not kill the rollback command's process group")
        }
    }
}

#[cfg(not(unix))]
fn kill_group(_pgid: u32) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::backend::Action;
    use crate::core::deploy::{Environment, ServiceName};
    use crate::core::policy::{Actor, Principal};
    use crate::core::rollback::PlanId;

    fn call() -> RollbackCall {
        RollbackCall {
            plan_id: PlanId::generate(),
            target: Target::new(
                ServiceName::parse("checkout").expect("name"),
                Environment::parse("production").expect("env"),
            ),
            from: Revision {
                id: "7".into(),
                version: "v1.4.0".into(),
            },
            to: Revision {
                id: "6".into(),
                version: "{to}".into(),
            },
            requested_by: Actor::new(Principal::parse("console:alice").expect("p"), "Alice"),
            reason: "error rate; rm -rf /".into(),
            disable_auto_sync: false,
            action: Action::Rollback,
        }
    }

    #[test]
    fn placeholders_are_replaced_once_per_argument() {
        let call = call();
        assert_eq!(
            render("{service}/{environment}:{from}->{to}@{to_revision}", &call),
            "checkout/production:v1.4.0->{to}@6"
        );
        assert_eq!(render("{reason}", &call), "error rate; rm -rf /");
        assert_eq!(
            render("{unknown} {from_revision} {", &call),
            "{unknown} 7 {"
        );
        assert_eq!(render("{requested_by}", &call), "console:alice");
        assert_eq!(render("{plan_id}", &call), call.plan_id.to_string());
    }

    #[test]
    fn stderr_tails_keep_the_last_lines_within_the_limit() {
        let mut tail = Tail::default();
        for i in 0..30 {
            tail.push(format!("line {i}\n\n").as_bytes());
        }
        let lines = tail.last_lines().expect("lines");
        assert_eq!(lines.lines().count(), STDERR_LINES);
        assert!(lines.starts_with("line 20\n") && lines.ends_with("line 29"));

        let mut long = Tail::default();
        long.push("é".repeat(3000).as_bytes());
        let kept = long.last_lines().expect("kept");
        assert!(kept.len() <= STDERR_MAX_BYTES, "{}", kept.len());
    }

    #[test]
    fn a_tail_drops_the_fragment_left_by_cutting() {
        let mut tail = Tail::default();
        tail.push(b"first");
        tail.push(&vec![b'x'; 3 * TAIL_BYTES]);
        tail.push(b"\nlast\n");
        assert_eq!(tail.lines(), ["last"]);
        assert_eq!(tail.last_line().as_deref(), Some("last"));
    }
}
