//! The fake `helm` executable (`tests/fixtures/helm/fake-helm`, a shell script) and its
//! state directory: what `helm history -o json` prints, how `helm rollback` ends, and the
//! argument vectors it was run with.

use std::path::{Path, PathBuf};

use chrono::{Duration, FixedOffset, Utc};
use serde_json::{Value, json};

pub(crate) struct FakeHelm {
    pub dir: tempfile::TempDir,
}

/// One revision of `helm history`.
pub(crate) struct Release {
    pub revision: i64,
    pub status: &'static str,
    pub chart: &'static str,
    pub app_version: &'static str,
    pub description: &'static str,
    pub minutes_ago: i64,
}

/// `helm history RELEASE -o json` output: oldest first, times as Go marshals them (with
/// nanoseconds and the host's offset).
pub(crate) fn history_json(releases: &[Release]) -> String {
    let offset = FixedOffset::east_opt(3600).expect("offset");
    let entries: Vec<Value> = releases
        .iter()
        .map(|r| {
            let updated = (Utc::now() - Duration::minutes(r.minutes_ago)).with_timezone(&offset);
            json!({
                "revision": r.revision,
                "updated": updated.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string(),
                "status": r.status,
                "chart": r.chart,
                "app_version": r.app_version,
                "description": r.description,
            })
        })
        .collect();
    serde_json::to_string(&entries).expect("json")
}

impl FakeHelm {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("kubeconfig"),
            "apiVersion: v1\nkind: Config\n",
        )
        .expect("write kubeconfig");
        Self { dir }
    }

    /// The checked-in script.
    pub(crate) fn executable() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/helm/fake-helm")
    }

    /// The kubeconfig path to configure: the fake keeps its state beside it.
    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write fake helm state");
    }

    pub(crate) fn history(&self, releases: &[Release]) {
        self.write("history.json", &history_json(releases));
    }

    /// What `helm history` prints once a rollback succeeded.
    pub(crate) fn history_after_rollback(&self, releases: &[Release]) {
        self.write("history-after.json", &history_json(releases));
    }

    pub(crate) fn fail_history(&self, stderr: &str) {
        self.write("history.stderr", stderr);
    }

    pub(crate) fn fail_rollback(&self, stderr: &str) {
        self.write("rollback.stderr", stderr);
    }

    pub(crate) fn hang_rollback(&self) {
        self.write("rollback.hang", "");
    }

    /// Every invocation's argument vector, in order.
    pub(crate) fn calls(&self) -> Vec<Vec<String>> {
        let log = std::fs::read_to_string(self.dir.path().join("argv.log")).unwrap_or_default();
        let mut calls = Vec::new();
        let mut current = Vec::new();
        for line in log.lines() {
            if line == "--end--" {
                calls.push(std::mem::take(&mut current));
            } else {
                current.push(line.to_owned());
            }
        }
        calls
    }

    pub(crate) fn rollbacks(&self) -> Vec<Vec<String>> {
        self.calls()
            .into_iter()
            .filter(|c| c.first().map(String::as_str) == Some("rollback"))
            .collect()
    }
}
