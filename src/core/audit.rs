//! The tamper-evident audit log. Every record carries `hash = H(prev_hash ‖ canonical
//! encoding of the record)`, where H is SHA-256, or HMAC-SHA256 keyed by `audit.key` so
//! that someone who can write to the database but does not hold the key cannot re-forge
//! the chain after editing it. The store keeps the head (last sequence number and hash) in
//! the same transaction, so removing records from the end is caught too.
//!
//! Records are appended in a committed, synced transaction before anyone is told that the
//! thing they record happened.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::clock::Clock;
use super::deploy::Target;
use super::policy::Actor;
use super::store::{Store, StoreError};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Action names written to the log. Strings, because the log outlives code versions.
pub mod actions {
    pub const ALERT_RECEIVED: &str = "alert.received";
    pub const ALERT_RESOLVED: &str = "alert.resolved";
    pub const SUMMARY_POSTED: &str = "summary.posted";
    pub const SUMMARY_DISMISSED: &str = "summary.dismissed";
    pub const DEPLOY_RECORDED: &str = "deploy.recorded";
    pub const DEPLOY_UPDATED: &str = "deploy.updated";
    pub const ROLLBACK_OFFERED: &str = "rollback.offered";
    pub const ROLLBACK_REQUESTED: &str = "rollback.requested";
    pub const ROLLBACK_DENIED: &str = "rollback.denied";
    pub const ROLLBACK_APPROVED: &str = "rollback.approved";
    pub const ROLLBACK_CONFIRMATION_REQUESTED: &str = "rollback.confirmation_requested";
    pub const ROLLBACK_CANCELLED: &str = "rollback.cancelled";
    pub const ROLLBACK_EXPIRED: &str = "rollback.expired";
    pub const ROLLBACK_STARTED: &str = "rollback.started";
    pub const ROLLBACK_BACKEND_CALL: &str = "rollback.backend_call";
    /// A progress line the backend reported while breakwater followed a rollback.
    pub const ROLLBACK_PROGRESS: &str = "rollback.progress";
    pub const ROLLBACK_SUCCEEDED: &str = "rollback.succeeded";
    pub const ROLLBACK_FAILED: &str = "rollback.failed";
    pub const ROLLBACK_STALE: &str = "rollback.stale";
    pub const ROLLBACK_INTERRUPTED: &str = "rollback.interrupted";
    pub const ROLLBACK_VERIFIED: &str = "rollback.verified";
    pub const ROLLBACK_NOT_RESOLVED: &str = "rollback.not_resolved";
    pub const CONSOLE_LOGIN: &str = "console.login";
    pub const CONSOLE_LOGIN_FAILED: &str = "console.login_failed";
    /// A deploy event (GitHub, GitLab, Flux) that matched no configured service.
    pub const DEPLOY_EVENT_UNROUTED: &str = "deploy_event.unrouted";
    /// A watched ConfigMap or Secret changed in place (Kubernetes `watch_config`).
    pub const CONFIG_CHANGE_RECORDED: &str = "config_change.recorded";
    /// Flagger's `rollback` hook was answered 2xx: it rolls the canary back now.
    pub const CANARY_ROLLBACK_TAKEN: &str = "canary_rollback.taken";
    /// A press of Roll back canary armed Flagger's `rollback` hook for one Canary: its next
    /// call is answered 2xx.
    pub const CANARY_ROLLBACK_ARMED: &str = "canary_rollback.armed";
}

/// A record to append; the store gives it its sequence number and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: Option<Actor>,
    pub action: String,
    pub target: Option<Target>,
    pub details: serde_json::Value,
}

impl AuditEntry {
    pub fn new(action: &str, at: DateTime<Utc>) -> Self {
        Self {
            at: at.trunc_subsecs(6),
            actor: None,
            action: action.to_owned(),
            target: None,
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn actor(mut self, actor: &Actor) -> Self {
        self.actor = Some(actor.clone());
        self
    }

    pub fn target(mut self, target: &Target) -> Self {
        self.target = Some(target.clone());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Details from a typed record (see `core::bot::details`).
    pub fn detail(self, details: &impl Serialize) -> Self {
        self.details(details_value(details))
    }

    /// The record this entry becomes at position `seq` after `prev_hash`.
    pub fn into_record(self, seq: i64, prev_hash: String, sealer: &AuditSealer) -> AuditRecord {
        let mut record = AuditRecord {
            seq,
            at: self.at,
            actor: self
                .actor
                .as_ref()
                .map(|a| a.principal.to_string())
                .unwrap_or_default(),
            actor_name: self
                .actor
                .as_ref()
                .map(|a| a.name().to_owned())
                .unwrap_or_default(),
            action: self.action,
            service: self
                .target
                .as_ref()
                .map(|t| t.service.to_string())
                .unwrap_or_default(),
            environment: self
                .target
                .as_ref()
                .map(|t| t.environment.to_string())
                .unwrap_or_default(),
            details: self.details.to_string(),
            prev_hash,
            hash: String::new(),
        };
        record.hash = sealer.seal(&record);
        record
    }
}

/// A stored audit record. `details` is the JSON text exactly as hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The principal (`slack:U0123`), empty for the bot itself.
    pub actor: String,
    pub actor_name: String,
    pub action: String,
    pub service: String,
    pub environment: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    pub fn details_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.details).unwrap_or(serde_json::Value::Null)
    }

    /// The bytes the hash covers: a version tag and every field, length-prefixed so that
    /// no two different records encode the same.
    pub fn canonical_bytes(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(b"breakwater-audit-v1\0");
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at.timestamp_micros().to_be_bytes());
        for field in [
            &self.actor,
            &self.actor_name,
            &self.action,
            &self.service,
            &self.environment,
            &self.details,
        ] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
    }
}

/// Computes record hashes, keyed when `audit.key` is configured.
#[derive(Clone)]
pub struct AuditSealer {
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for AuditSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSealer")
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

impl AuditSealer {
    pub fn new(key: Option<Vec<u8>>) -> Self {
        Self { key }
    }

    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    pub fn seal(&self, record: &AuditRecord) -> String {
        let mut buffer = Vec::with_capacity(256);
        self.seal_with(record, &mut buffer)
    }

    fn seal_with(&self, record: &AuditRecord, buffer: &mut Vec<u8>) -> String {
        record.canonical_bytes(buffer);
        match &self.key {
            Some(key) => {
                // HMAC accepts keys of any length; this cannot fail.
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                mac.update(record.prev_hash.as_bytes());
                mac.update(buffer);
                hex::encode(mac.finalize().into_bytes())
            }
            None => {
                let mut hasher = Sha256::new();
                hasher.update(record.prev_hash.as_bytes());
                hasher.update(buffer);
                hex::encode(hasher.finalize())
            }
        }
    }
}

/// Filters for reading the log (console, `/breakwater audit`).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub service: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Only records with a smaller sequence number (paging backwards).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// The first thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    pub seq: i64,
    pub reason: String,
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {}: {}", self.seq, self.reason)
    }
}

/// Walks a chain in sequence order and finds the first broken link. Kept apart from the
/// store so it can be benchmarked and tested on records in memory.
#[derive(Debug)]
pub struct ChainVerifier<'a> {
    sealer: &'a AuditSealer,
    expected_seq: i64,
    prev_hash: String,
    buffer: Vec<u8>,
}

impl<'a> ChainVerifier<'a> {
    pub fn new(sealer: &'a AuditSealer) -> Self {
        Self {
            sealer,
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            buffer: Vec::with_capacity(512),
        }
    }

    pub fn check(&mut self, record: &AuditRecord) -> Result<(), ChainProblem> {
        if record.seq > self.expected_seq {
            return Err(ChainProblem {
                seq: self.expected_seq,
                reason: if self.expected_seq + 1 == record.seq {
                    "is missing (deleted)".to_owned()
                } else {
                    format!(
                        "records {}–{} are missing (deleted)",
                        self.expected_seq,
                        record.seq - 1
                    )
                },
            });
        }
        if record.seq < self.expected_seq {
            return Err(ChainProblem {
                seq: record.seq,
                reason: "appears out of order (inserted or reordered)".to_owned(),
            });
        }
        if record.prev_hash != self.prev_hash {
            return Err(ChainProblem {
                seq: record.seq,
                reason: "does not follow the record before it (inserted, reordered, or the one \
                         before was deleted)"
                    .to_owned(),
            });
        }
        let recomputed = self.sealer.seal_with(record, &mut self.buffer);
        if recomputed != record.hash {
            return Err(ChainProblem {
                seq: record.seq,
                reason: if self.sealer.is_keyed() {
                    "content does not match its hash (edited, or written without the audit key)"
                        .to_owned()
                } else {
                    "content does not match its hash (edited)".to_owned()
                },
            });
        }
        self.expected_seq += 1;
        self.prev_hash.clone_from(&record.hash);
        Ok(())
    }

    /// Records checked so far.
    pub fn count(&self) -> i64 {
        self.expected_seq - 1
    }

    pub fn head_hash(&self) -> &str {
        &self.prev_hash
    }

    /// Compares the end of the walk with the head the store recorded.
    pub fn finish(&self, recorded_head: Option<(i64, String)>) -> Result<(), ChainProblem> {
        match recorded_head {
            None if self.count() == 0 => Ok(()),
            None => Err(ChainProblem {
                seq: self.count(),
                reason: "the chain head record is missing".to_owned(),
            }),
            Some((seq, _)) if seq > self.count() => Err(ChainProblem {
                seq: self.count() + 1,
                reason: format!(
                    "is missing: the chain head says the log ends at record {seq} (records removed \
                     from the end)"
                ),
            }),
            Some((seq, hash)) if seq != self.count() || hash != self.prev_hash => {
                Err(ChainProblem {
                    seq,
                    reason: "does not match the recorded chain head".to_owned(),
                })
            }
            Some(_) => Ok(()),
        }
    }
}

/// The outcome of `breakwater audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub count: i64,
    pub head_hash: String,
    pub problem: Option<ChainProblem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing CSV failed: {0}")]
    Csv(#[from] csv::Error),
}

/// The audit log on top of a store.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn Store>,
    sealer: AuditSealer,
    clock: Arc<dyn Clock>,
}

const PAGE: u32 = 10_000;

impl AuditLog {
    pub fn new(store: Arc<dyn Store>, sealer: AuditSealer, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            sealer,
            clock,
        }
    }

    /// An entry stamped with the current time.
    pub fn entry(&self, action: &str) -> AuditEntry {
        AuditEntry::new(action, self.clock.now())
    }

    /// Appends durably; returns once committed.
    pub async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        self.store.append_audit(&entry, &self.sealer).await
    }

    pub async fn search(
        &self,
        query: &crate::audit::AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.store.audit_search(query).await
    }

    /// Recomputes the whole chain against one consistent snapshot of the log (see
    /// [`Store::audit_snapshot`]), so that a live cluster appending meanwhile does not
    /// look like a broken chain. The store reads the next page while this one is hashed.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut verifier = ChainVerifier::new(&self.sealer);
        let (pages, received) = tokio::sync::mpsc::channel(1);
        let reading = self.store.audit_snapshot(PAGE, pages);
        let checking = async {
            // Owned here, so that returning early drops it and stops the reading.
            let mut received = received;
            while let Some(page) = received.recv().await {
                if let Some(problem) = page.iter().find_map(|record| verifier.check(record).err()) {
                    return Some(problem);
                }
            }
            None
        };
        let (head, problem) = tokio::join!(reading, checking);
        let head = head?;
        let problem = match problem {
            Some(problem) => Some(problem),
            None => verifier.finish(head).err(),
        };
        Ok(VerifyReport {
            count: verifier.count(),
            head_hash: verifier.head_hash().to_owned(),
            problem,
        })
    }

    /// Writes every record at or after `since`, in sequence order; returns how many.
    pub async fn export(
        &self,
        format: ExportFormat,
        since: Option<DateTime<Utc>>,
        out: &mut dyn Write,
    ) -> Result<u64, ExportError> {
        self.export_matching(format, since, &|_| true, out).await
    }

    /// Like [`export`](Self::export), but only the records `keep` accepts: the console's
    /// download of what its filters show.
    pub async fn export_matching(
        &self,
        format: ExportFormat,
        since: Option<DateTime<Utc>>,
        keep: &(dyn Fn(&AuditRecord) -> bool + Sync),
        out: &mut dyn Write,
    ) -> Result<u64, ExportError> {
        let wanted =
            |record: &AuditRecord| since.is_none_or(|since| record.at >= since) && keep(record);
        match format {
            ExportFormat::Jsonl => {
                let mut line = Vec::new();
                self.for_each_record(wanted, |record| {
                    line.clear();
                    serde_json::to_writer(&mut line, &ExportedRecord::from(record))
                        .map_err(std::io::Error::other)?;
                    line.push(b'\n');
                    out.write_all(&line)?;
                    Ok(())
                })
                .await
            }
            ExportFormat::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                writer.write_record([
                    "seq",
                    "at",
                    "actor",
                    "actor_name",
                    "action",
                    "service",
                    "environment",
                    "details",
                    "prev_hash",
                    "hash",
                ])?;
                let written = self
                    .for_each_record(wanted, |record| {
                        writer.write_record([
                            record.seq.to_string().as_str(),
                            &record
                                .at
                                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            &record.actor,
                            &record.actor_name,
                            &record.action,
                            &record.service,
                            &record.environment,
                            &record.details,
                            &record.prev_hash,
                            &record.hash,
                        ])?;
                        Ok(())
                    })
                    .await?;
                writer.flush()?;
                Ok(written)
            }
        }
    }

    async fn for_each_record(
        &self,
        keep: impl Fn(&AuditRecord) -> bool,
        mut visit: impl FnMut(&AuditRecord) -> Result<(), ExportError>,
    ) -> Result<u64, ExportError> {
        let mut written = 0;
        let mut after = 0;
        loop {
            let page = self.store.audit_records(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in page.iter().filter(|r| keep(r)) {
                visit(record)?;
                written += 1;
            }
        }
        Ok(written)
    }
}

/// The JSON Lines shape: details as a JSON object rather than a string.
#[derive(Serialize)]
struct ExportedRecord<'a> {
    seq: i64,
    at: String,
    actor: &'a str,
    actor_name: &'a str,
    action: &'a str,
    service: &'a str,
    environment: &'a str,
    details: serde_json::Value,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> From<&'a AuditRecord> for ExportedRecord<'a> {
    fn from(record: &'a AuditRecord) -> Self {
        Self {
            seq: record.seq,
            at: record
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            actor: &record.actor,
            actor_name: &record.actor_name,
            action: &record.action,
            service: &record.service,
            environment: &record.environment,
            details: record.details_value(),
            prev_hash: &record.prev_hash,
            hash: &record.hash,
        }
    }
}

/// A typed detail record as the JSON the audit log stores. The detail types serialize
/// strings, numbers and times only, so this cannot fail in practice; if it ever did, the
/// record still says why rather than being lost.
pub fn details_value(details: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(details)
        .unwrap_or_else(|error| serde_json::json!({ "unserializable_details": error.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(sealer: &AuditSealer, n: i64) -> Vec<AuditRecord> {
        let start = DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let record = AuditEntry::new(
                    actions::ALERT_RECEIVED,
                    start + chrono::Duration::seconds(seq),
                )
                .details(serde_json::json!({ "n": seq }))
                .into_record(seq, prev.clone(), sealer);
                prev.clone_from(&record.hash);
                record
            })
            .collect()
    }

    fn verify(
        sealer: &AuditSealer,
        records: &[AuditRecord],
        head: Option<(i64, String)>,
    ) -> Result<(), ChainProblem> {
        let mut verifier = ChainVerifier::new(sealer);
        for record in records {
            verifier.check(record)?;
        }
        verifier.finish(head)
    }

    fn head(records: &[AuditRecord]) -> Option<(i64, String)> {
        records.last().map(|r| (r.seq, r.hash.clone()))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let sealer = AuditSealer::new(None);
        let records = chain(&sealer, 5);
        assert_eq!(verify(&sealer, &records, head(&records)), Ok(()));
    }

    #[test]
    fn an_edited_record_is_named() {
        let sealer = AuditSealer::new(None);
        let mut records = chain(&sealer, 5);
        let original_head = head(&records);
        records[2].actor_name = "mallory".into();
        assert_eq!(
            verify(&sealer, &records, original_head).map_err(|p| p.seq),
            Err(3)
        );
    }

    #[test]
    fn a_deleted_record_is_named() {
        let sealer = AuditSealer::new(None);
        let mut records = chain(&sealer, 5);
        let original_head = head(&records);
        records.remove(1);
        let problem = verify(&sealer, &records, original_head).expect_err("broken");
        assert_eq!(problem.seq, 2);
        assert!(problem.reason.contains("deleted"));
    }

    #[test]
    fn records_removed_from_the_end_are_caught_by_the_head() {
        let sealer = AuditSealer::new(None);
        let mut records = chain(&sealer, 5);
        let original_head = head(&records);
        records.truncate(3);
        assert_eq!(
            verify(&sealer, &records, original_head).map_err(|p| p.seq),
            Err(4)
        );
    }

    #[test]
    fn reordered_records_are_caught() {
        let sealer = AuditSealer::new(None);
        let mut records = chain(&sealer, 5);
        let original_head = head(&records);
        // Swap the contents of records 2 and 3 but keep their sequence numbers.
        let (a, b) = (records[1].clone(), records[2].clone());
        records[1] = AuditRecord { seq: 2, ..b };
        records[2] = AuditRecord { seq: 3, ..a };
        assert_eq!(
            verify(&sealer, &records, original_head).map_err(|p| p.seq),
            Err(2)
        );
    }

    #[test]
    fn an_inserted_record_is_caught() {
        let sealer = AuditSealer::new(None);
        let mut records = chain(&sealer, 5);
        let forged = AuditEntry::new(actions::ROLLBACK_SUCCEEDED, records[1].at).into_record(
            3,
            records[1].hash.clone(),
            &sealer,
        );
        records.insert(2, forged);
        for (i, record) in records.iter_mut().enumerate().skip(3) {
            record.seq = i as i64 + 1;
        }
        let original_head = Some((6, records[5].hash.clone()));
        assert_eq!(
            verify(&sealer, &records, original_head).map_err(|p| p.seq),
            Err(4)
        );
    }

    #[test]
    fn a_keyed_chain_cannot_be_reforged_without_the_key() {
        let keyed = AuditSealer::new(Some(b"audit-key".to_vec()));
        let mut records = chain(&keyed, 3);
        // An attacker edits record 2 and recomputes the hashes without the key.
        let unkeyed = AuditSealer::new(None);
        records[1].actor_name = "mallory".into();
        records[1].hash = unkeyed.seal(&records[1]);
        records[2].prev_hash = records[1].hash.clone();
        records[2].hash = unkeyed.seal(&records[2]);
        assert_eq!(
            verify(&keyed, &records, head(&records)).map_err(|p| p.seq),
            Err(2)
        );
    }

    #[test]
    fn canonical_encoding_separates_fields() {
        let sealer = AuditSealer::new(None);
        let a = chain(&sealer, 1).remove(0);
        let mut b = a.clone();
        b.actor = "ab".into();
        b.actor_name = String::new();
        let mut c = a.clone();
        c.actor = "a".into();
        c.actor_name = "b".into();
        assert_ne!(sealer.seal(&b), sealer.seal(&c));
    }
}
