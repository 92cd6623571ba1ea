//! The Helm backend: history from `helm history RELEASE -o json`, rollback with
//! `helm rollback RELEASE REVISION --wait --timeout …`, run as the configured `helm`
//! binary with an argument vector, never through a shell.
//!
//! Every call adds `--namespace`, `--kube-context` and `--kubeconfig` when they are set
//! (the service's `namespace`, the backend's `kube_context` and `kubeconfig`). `helm`
//! sees breakwater's environment, so `KUBECONFIG`, `HELM_*` and cloud credentials work as
//! they do in a shell.
//!
//! `helm rollback --wait` returns when the release is ready or helm's own `--timeout`
//! passed, so the rollback runs to its end inside [`DeployBackend::rollback`] (as the
//! command backend does) and its operation is already finished: there is nothing to
//! follow, and nothing to resume after a restart. breakwater stops helm itself only if it
//! overruns its timeout by a margin. A failure quotes the last lines of helm's stderr.
//! An exit status of 0 is not taken on its word: the rollback succeeded only when `helm
//! history` then shows a new newest revision "Rollback to N" that is `deployed`.
//!
//! The current release is the newest revision, as for helm itself: after a failed
//! upgrade (its manifests applied, `--wait` timed out) that is the failed one, the suspect,
//! and the offer is the revision before it that ran healthy — where `helm rollback` with
//! no revision goes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{VersionSource, distinct_versions};
use crate::config::{HelmBackendConfig, ServiceConfig};
use crate::core::backend::{
    BackendError, BackendErrorKind, Capabilities, Caveat, DeployBackend, Operation, Outcome,
    ProgressFn, RollbackCall,
};
use crate::core::deploy::{Deploy, DeploySource, DeployStatus, Revision, ServiceName, Target};

/// `helm history` answers with at most 256 revisions of about 200 bytes each.
const STDOUT_LIMIT: usize = 4 * 1024 * 1024;
const STDERR_LIMIT: usize = 16 * 1024;
/// How many lines of stderr a failure quotes.
const STDERR_LINES: usize = 8;
/// Reading history is quick or broken.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

pub struct HelmBackend {
    name: String,
    helm: PathBuf,
    kube_context: Option<String>,
    kubeconfig: Option<PathBuf>,
    timeout: Duration,
    services: HashMap<ServiceName, ServiceConfig>,
}

/// The release an alert's target maps to.
#[derive(Debug, Clone)]
struct ReleaseRef {
    release: String,
    namespace: Option<String>,
}

impl std::fmt::Display for ReleaseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} in namespace {namespace}", self.release),
            None => f.write_str(&self.release),
        }
    }
}

/// One element of `helm history -o json`.
#[derive(Debug, Clone, Deserialize)]
struct HistoryEntry {
    revision: i64,
    #[serde(default)]
    updated: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    chart: String,
    #[serde(default)]
    app_version: String,
    #[serde(default)]
    description: String,
}

/// How a helm run ended.
struct Ran {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum RunError {
    Spawn(std::io::Error),
    Wait(std::io::Error),
    TimedOut { stderr: Vec<u8> },
}

impl HelmBackend {
    pub fn new(name: &str, config: &HelmBackendConfig, services: &[ServiceConfig]) -> Self {
        Self {
            name: name.to_owned(),
            helm: config.helm.clone(),
            kube_context: config.kube_context.clone(),
            kubeconfig: config.kubeconfig.clone(),
            timeout: config.timeout,
            services: super::services_by_name(services),
        }
    }

    fn release_ref(&self, target: &Target) -> ReleaseRef {
        let service = self.services.get(&target.service);
        let release = service.map_or_else(
            || target.service.as_str().to_owned(),
            |s| s.setting(&s.release, &target.environment, "{service}"),
        );
        let namespace = service
            .and_then(|s| {
                s.namespace
                    .as_ref()
                    .map(|_| s.setting(&s.namespace, &target.environment, ""))
            })
            .filter(|ns| !ns.is_empty());
        ReleaseRef { release, namespace }
    }

    /// The arguments every call ends with.
    fn common_args(&self, release: &ReleaseRef) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if let Some(namespace) = &release.namespace {
            args.extend(["--namespace".into(), namespace.into()]);
        }
        if let Some(context) = &self.kube_context {
            args.extend(["--kube-context".into(), context.into()]);
        }
        if let Some(kubeconfig) = &self.kubeconfig {
            args.extend(["--kubeconfig".into(), kubeconfig.into()]);
        }
        args
    }

    /// The argument vector of `helm history` for a release.
    fn history_args(&self, release: &ReleaseRef) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "history".into(),
            release.release.clone().into(),
            "-o".into(),
            "json".into(),
        ];
        args.extend(self.common_args(release));
        args
    }

    /// The argument vector of `helm rollback` to a revision.
    fn rollback_args(&self, release: &ReleaseRef, revision: i64) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "rollback".into(),
            release.release.clone().into(),
            revision.to_string().into(),
            "--wait".into(),
            "--timeout".into(),
            format!("{}s", self.timeout.as_secs().max(1)).into(),
        ];
        args.extend(self.common_args(release));
        args
    }

    /// How long breakwater lets a `helm rollback` run: helm's own timeout plus a margin
    /// for talking to the cluster before and after waiting.
    fn rollback_limit(&self) -> Duration {
        self.timeout + (self.timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    async fn run(&self, args: Vec<OsString>, limit: Duration) -> Result<Ran, RunError> {
        let mut command = tokio::process::Command::new(&self.helm);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command.spawn().map_err(RunError::Spawn)?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let ran = tokio::time::timeout(limit, async {
            let (_, _, status) = tokio::join!(
                read_bounded(stdout, &mut out, STDOUT_LIMIT, false),
                read_bounded(stderr, &mut err, STDERR_LIMIT, true),
                child.wait()
            );
            status
        })
        .await;
        match ran {
            Ok(Ok(status)) => Ok(Ran {
                status,
                stdout: out,
                stderr: err,
            }),
            Ok(Err(error)) => Err(RunError::Wait(error)),
            Err(_) => {
                let _ = child.kill().await;
                Err(RunError::TimedOut { stderr: err })
            }
        }
    }

    fn run_error(
        &self,
        error: RunError,
        release: &ReleaseRef,
        rolling_back: bool,
        limit: Duration,
    ) -> BackendError {
        let name = &self.name;
        match error {
            RunError::Spawn(error) => BackendError::new(
                BackendErrorKind::Unavailable,
                format!(
                    "could not start helm ({} : {error}); nothing was changed. Check \
                     backends.{name}.helm and that helm is installed on the breakwater host",
                    self.helm.display()
                ),
            ),
            RunError::Wait(error) => BackendError::new(
                BackendErrorKind::Unavailable,
                format!(
                    "lost track of helm ({error}); {}. Check `helm history {}`",
                    if rolling_back {
                        "the rollback may or may not have happened"
                    } else {
                        "nothing was changed"
                    },
                    release.release
                ),
            ),
            RunError::TimedOut { stderr } => {
                let mut message = if rolling_back {
                    format!(
                        "helm rollback of {release} did not return within {} and was stopped; \
                         the rollback may be half-done. Check `helm history {}` and the pods \
                         before trying again",
                        humantime::format_duration(limit),
                        release.release
                    )
                } else {
                    format!(
                        "helm history of {release} did not return within {}; nothing was \
                         changed. Check that the cluster is reachable with backends.{name}'s \
                         kubeconfig and context",
                        humantime::format_duration(limit)
                    )
                };
                if let Some(lines) = last_lines(&stderr) {
                    message.push_str(&format!(". Last lines of its stderr:\n{lines}"));
                }
                BackendError::new(BackendErrorKind::Timeout, message)
            }
        }
    }

    /// A message for helm exiting with an error, from what it wrote to stderr.
    fn helm_failed(&self, ran: &Ran, release: &ReleaseRef, to: Option<i64>) -> BackendError {
        let name = &self.name;
        let stderr = last_lines(&ran.stderr).unwrap_or_else(|| "(nothing on stderr)".to_owned());
        let lower = stderr.to_lowercase();
        let ended = match ran.status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("ended abnormally ({})", ran.status),
        };
        let done = if to.is_some() {
            "nothing was rolled back"
        } else {
            "nothing was changed"
        };
        let (kind, next) = if lower.contains("another operation") && lower.contains("in progress") {
            (
                BackendErrorKind::Conflict,
                format!(
                    "{done}: another helm operation on {release} is in progress. Wait for it (or \
                     find who runs it with `helm history {}`), then ask for a fresh plan",
                    release.release
                ),
            )
        } else if lower.contains("release: not found") {
            (
                BackendErrorKind::NotFound,
                format!(
                    "{done}: helm has no release {release}. Check the service's release and \
                     namespace settings against `helm list -A`"
                ),
            )
        } else if let Some(revision) =
            to.filter(|_| lower.contains("has no") && lower.contains("version"))
        {
            (
                BackendErrorKind::NotFound,
                format!(
                    "{done}: revision {revision} of {release} no longer exists (helm keeps \
                     --history-max revisions). Ask for a fresh plan"
                ),
            )
        } else if lower.contains("forbidden")
            || lower.contains("unauthorized")
            || lower.contains("provide credentials")
        {
            (
                BackendErrorKind::Unauthorized,
                format!(
                    "{done}: the cluster refused helm's credentials. Check backends.{name}'s \
                     kubeconfig and kube_context, and that its account may read and write the \
                     release's Secrets and resources (see the README)"
                ),
            )
        } else if lower.contains("kubernetes cluster unreachable") {
            (
                BackendErrorKind::Unavailable,
                format!(
                    "{done}: helm could not reach the cluster. Check backends.{name}'s kubeconfig \
                     and kube_context, then try again"
                ),
            )
        } else if to.is_some()
            && (lower.contains("context deadline exceeded")
                || lower.contains("timed out waiting for the condition"))
        {
            (
                BackendErrorKind::Timeout,
                format!(
                    "helm applied the rollback of {release} but its resources did not become \
                     ready within {}, and helm marked the new revision failed. Check the pods \
                     (kubectl get pods{}) and `helm history {}` before doing anything else",
                    humantime::format_duration(self.timeout),
                    release
                        .namespace
                        .as_ref()
                        .map(|ns| format!(" -n {ns}"))
                        .unwrap_or_default(),
                    release.release
                ),
            )
        } else {
            (
                BackendErrorKind::Refused,
                format!(
                    "{done} (or the rollback failed part-way). Check `helm history {}` and deal \
                     with the reason helm gives, then ask for a fresh plan",
                    release.release
                ),
            )
        };
        BackendError::new(kind, format!("helm {ended}: {stderr}\n{next}"))
    }

    async fn read_history(&self, release: &ReleaseRef) -> Result<Vec<HistoryEntry>, BackendError> {
        let limit = READ_TIMEOUT.min(self.timeout.max(Duration::from_secs(1)));
        let ran = self
            .run(self.history_args(release), limit)
            .await
            .map_err(|e| self.run_error(e, release, false, limit))?;
        if !ran.status.success() {
            return Err(self.helm_failed(&ran, release, None));
        }
        let mut entries: Vec<HistoryEntry> = serde_json::from_slice(&ran.stdout).map_err(|e| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "`helm history {} -o json` printed something breakwater cannot read ({e}); \
                     nothing was changed. Check that backends.{}.helm is helm 3 or newer",
                    release.release, self.name
                ),
            )
        })?;
        entries.sort_by_key(|e| e.revision);
        Ok(entries)
    }

    fn deploys(&self, target: &Target, entries: &[HistoryEntry]) -> Vec<Deploy> {
        let bases: Vec<String> = entries.iter().map(base_version).collect();
        let contents = contents(entries);
        let numbers: Vec<String> = contents.iter().map(|c| c.to_string()).collect();
        let sources: Vec<VersionSource<'_>> = (0..entries.len())
            .map(|i| VersionSource {
                content: &numbers[i],
                base: &bases[i],
                number: &numbers[i],
            })
            .collect();
        let versions = distinct_versions(&sources);
        let mut deploys: Vec<Deploy> = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let updated = DateTime::parse_from_rfc3339(&entry.updated)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|_| Utc::now());
                let status = match entry.status.as_str() {
                    "deployed" | "superseded" => DeployStatus::Succeeded,
                    s if s.starts_with("pending") => DeployStatus::Started,
                    _ => DeployStatus::Failed,
                };
                let mut description = format!("helm: {}", entry.description);
                if !entry.chart.is_empty() {
                    description.push_str(&format!(" (chart {}, {})", entry.chart, entry.status));
                }
                Deploy {
                    target: target.clone(),
                    version: versions[i].clone(),
                    previous_version: i.checked_sub(1).map(|p| versions[p].clone()),
                    revision: Some(entry.revision.to_string()),
                    commit: None,
                    author: None,
                    description: Some(description),
                    url: None,
                    started_at: updated,
                    finished_at: (status != DeployStatus::Started).then_some(updated),
                    status,
                    changes: Vec::new(),
                    config_changes: Vec::new(),
                    source: DeploySource::Backend,
                }
            })
            .collect();
        deploys.reverse();
        deploys
    }
}

/// What a `helm rollback` that exited 0 did, by the history it left: success only when
/// the newest revision is a new one, records "Rollback to N" and is `deployed`.
fn rollback_outcome(
    release: &ReleaseRef,
    to: &Revision,
    revision: i64,
    newest_before: i64,
    after: &[HistoryEntry],
    said: &str,
) -> Outcome {
    let check = format!(
        "Check `helm history {}` before doing anything else",
        release.release
    );
    let Some(newest) = after.last().filter(|e| e.revision > newest_before) else {
        return Outcome::Failed(format!(
            "helm said the rollback of {release} to revision {revision} succeeded, but its \
             history shows no new revision (the newest is still {newest_before}), so nothing \
             is known to have been rolled back. {check}"
        ));
    };
    let ours = after.iter().find(|e| {
        e.revision > newest_before && e.description.trim() == format!("Rollback to {revision}")
    });
    match ours {
        Some(ours) if ours.revision == newest.revision && ours.status == "deployed" => {
            let mut detail = format!(
                "helm rolled {release} back to revision {revision} ({}) as revision {}, which is \
                 deployed and ready",
                to.version, ours.revision
            );
            if !said.is_empty() {
                detail.push_str(&format!(": {said}"));
            }
            Outcome::Succeeded(detail)
        }
        Some(ours) if ours.revision == newest.revision => Outcome::Failed(format!(
            "helm's rollback of {release} to revision {revision} became revision {}, which helm \
             shows as {}, not deployed. {check}",
            ours.revision, ours.status
        )),
        Some(ours) => Outcome::Failed(format!(
            "helm rolled {release} back to revision {revision} as revision {}, but revision {} \
             ({}, {}) was made after it: someone deployed again. {check}",
            ours.revision, newest.revision, newest.description, newest.status
        )),
        None => Outcome::Failed(format!(
            "helm said the rollback of {release} to revision {revision} succeeded, but the new \
             revision {} is \"{}\" ({}), not the rollback. {check}",
            newest.revision, newest.description, newest.status
        )),
    }
}

/// The version a revision is known by: its app version, else its chart version.
fn base_version(entry: &HistoryEntry) -> String {
    if !entry.app_version.is_empty() {
        return entry.app_version.clone();
    }
    // `chart` is NAME-VERSION; a version starts with a digit after the first such dash.
    entry
        .chart
        .char_indices()
        .find(|(i, c)| {
            *c == '-'
                && entry.chart[i + 1..]
                    .chars()
                    .next()
                    .is_some_and(|n| n.is_ascii_digit())
        })
        .map(|(i, _)| entry.chart[i + 1..].to_owned())
        .unwrap_or_else(|| format!("revision {}", entry.revision))
}

/// For each revision (oldest first), the revision whose content it deployed: itself, or
/// for "Rollback to N", whatever N deployed.
fn contents(entries: &[HistoryEntry]) -> Vec<i64> {
    let mut content_of: HashMap<i64, i64> = HashMap::new();
    entries
        .iter()
        .map(|entry| {
            let rolled_back_to = entry
                .description
                .strip_prefix("Rollback to ")
                .and_then(|n| n.trim().parse::<i64>().ok())
                .and_then(|n| content_of.get(&n).copied());
            let content = rolled_back_to.unwrap_or(entry.revision);
            content_of.insert(entry.revision, content);
            content
        })
        .collect()
}

#[async_trait]
impl DeployBackend for HelmBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "helm"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            any_revision: true,
            config_diffs: false,
            own_history: true,
            resumable: false,
        }
    }

    async fn history(&self, target: &Target) -> Result<Vec<Deploy>, BackendError> {
        let release = self.release_ref(target);
        let entries = self.read_history(&release).await?;
        Ok(self.deploys(target, &entries))
    }

    async fn current(&self, target: &Target) -> Result<Option<Revision>, BackendError> {
        let release = self.release_ref(target);
        let entries = self.read_history(&release).await?;
        let deploys = self.deploys(target, &entries);
        // Helm's current release is its newest revision, whatever its status: a `helm
        // upgrade --wait` that timed out left its manifests applied and its revision
        // `failed`, and `helm rollback` without a revision goes back from it.
        let deployed = entries.last().map(|e| e.revision.to_string());
        Ok(deployed.and_then(|revision| {
            deploys
                .iter()
                .find(|d| d.revision.as_deref() == Some(&revision))
                .map(Deploy::as_revision)
        }))
    }

    async fn caveats(&self, target: &Target, _to: &Revision) -> Result<Vec<Caveat>, BackendError> {
        let release = self.release_ref(target);
        let entries = self.read_history(&release).await?;
        Ok(entries
            .last()
            .filter(|e| e.status.starts_with("pending"))
            .map(|e| Caveat {
                message: format!(
                    "helm shows revision {} of {release} as {}: another helm operation is \
                     running, and a rollback will be refused until it ends.",
                    e.revision, e.status
                ),
                blocking: false,
                remedy: None,
            })
            .into_iter()
            .collect())
    }

    async fn rollback(&self, call: &RollbackCall) -> Result<Operation, BackendError> {
        let release = self.release_ref(&call.target);
        let revision: i64 = call.to.id.parse().map_err(|_| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "the plan names revision {:?}, which is not a helm revision number; nothing \
                     was rolled back. Ask for a fresh plan",
                    call.to.id
                ),
            )
        })?;
        // The newest revision before: the rollback must add a newer one.
        let newest_before = self
            .read_history(&release)
            .await?
            .last()
            .map_or(0, |e| e.revision);
        let started_at = Utc::now();
        let limit = self.rollback_limit();
        tracing::info!(backend = %self.name, release = %release, revision, "running helm rollback");
        let ran = self
            .run(self.rollback_args(&release, revision), limit)
            .await
            .map_err(|e| self.run_error(e, &release, true, limit))?;
        if !ran.status.success() {
            return Err(self.helm_failed(&ran, &release, Some(revision)));
        }
        let said = String::from_utf8_lossy(&ran.stdout)
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(|l| super::snippet(l, 200))
            .unwrap_or_default();
        let outcome = match self.read_history(&release).await {
            Ok(after) => {
                rollback_outcome(&release, &call.to, revision, newest_before, &after, &said)
            }
            Err(error) => Outcome::Failed(format!(
                "helm said the rollback of {release} to revision {revision} succeeded, but \
                 breakwater could not read `helm history {}` to see it ({error}). Check it before \
                 doing anything else",
                release.release
            )),
        };
        Ok(Operation {
            target: call.target.clone(),
            to: call.to.clone(),
            started_at,
            handle: serde_json::json!({ "release": release.release, "revision": revision }),
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
                "the helm rollback of {} was interrupted and cannot be followed again; check \
                 `helm history` for whether it happened",
                operation.target
            ))
        })
    }
}

impl std::fmt::Debug for HelmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelmBackend")
            .field("name", &self.name)
            .field("helm", &self.helm)
            .field("kube_context", &self.kube_context)
            .field("kubeconfig", &self.kubeconfig)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Reads a stream to its end, keeping at most `limit` bytes: the first ones, or with
/// `keep_end` the last ones.
async fn read_bounded(
    stream: Option<impl AsyncRead + Unpin>,
    into: &mut Vec<u8>,
    limit: usize,
    keep_end: bool,
) {
    let Some(mut stream) = stream else { return };
    let mut buffer = [0u8; 8192];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        into.extend_from_slice(&buffer[..read]);
        if into.len() > limit {
            if keep_end {
                let excess = into.len() - limit;
                into.drain(..excess);
            } else {
                into.truncate(limit);
            }
        }
    }
}

/// The last [`STDERR_LINES`] non-empty lines of an output.
fn last_lines(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(STDERR_LINES);
    (!lines.is_empty()).then(|| lines[start..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: i64, chart: &str, app_version: &str, description: &str) -> HistoryEntry {
        HistoryEntry {
            revision,
            updated: String::new(),
            status: "superseded".into(),
            chart: chart.into(),
            app_version: app_version.into(),
            description: description.into(),
        }
    }

    #[test]
    fn a_revision_is_known_by_its_app_version_else_its_chart_version() {
        assert_eq!(base_version(&entry(1, "web-1.2.0", "2.0.1", "")), "2.0.1");
        assert_eq!(
            base_version(&entry(1, "my-web2-1.2.0-rc.1", "", "")),
            "1.2.0-rc.1"
        );
        assert_eq!(base_version(&entry(4, "web", "", "")), "revision 4");
    }

    #[test]
    fn a_rollback_revision_deploys_what_its_target_deployed() {
        let entries = [
            entry(1, "web-1.0.0", "1.0", "Install complete"),
            entry(2, "web-1.1.0", "1.1", "Upgrade complete"),
            entry(3, "web-1.0.0", "1.0", "Rollback to 1"),
            entry(4, "web-1.0.0", "1.0", "Rollback to 3"),
        ];
        assert_eq!(contents(&entries), [1, 2, 1, 1]);
    }
}
