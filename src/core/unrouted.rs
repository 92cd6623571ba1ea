//! Alerts that matched no configured service. Each is counted; the first of each alert
//! name is logged with what breakwater looked at, so the operator can add a label or an
//! alias, without one log line per alert in a storm.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;

use super::alert::service_label_keys;

/// Alert names remembered as already logged. Beyond it the oldest name is forgotten (and
/// logged again when it comes back): memory stays bounded whatever names senders invent.
pub const SEEN_NAMES: usize = 1024;
/// Labels quoted back per alert, and the longest value quoted.
const MAX_LABELS: usize = 8;
const MAX_VALUE: usize = 80;

/// The alert names already logged as unrouted, oldest first.
#[derive(Debug, Default)]
pub struct UnroutedNames {
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl UnroutedNames {
    /// Whether `name` is seen for the first time (since it was last forgotten).
    pub fn first_time(&self, name: &str) -> bool {
        let key = name.trim().to_lowercase();
        let mut guard = crate::sync::lock(&self.seen);
        let (set, order) = &mut *guard;
        if set.contains(&key) {
            return false;
        }
        if order.len() >= SEEN_NAMES
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        set.insert(key.clone());
        order.push_back(key);
        true
    }
}

/// The labels a service name is read from, as the alert carries them (`service=ledger`),
/// in the order recognition tries them; at most a few, values clipped.
pub fn service_labels_looked_at(labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    service_label_keys()
        .iter()
        .filter_map(|key| {
            labels
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(k, v)| (k.clone(), crate::text::clip(v.trim(), MAX_VALUE)))
        })
        .take(MAX_LABELS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_alert_name_is_reported_once_until_forgotten() {
        let names = UnroutedNames::default();
        assert!(names.first_time("LedgerDown"));
        assert!(!names.first_time("ledgerdown"));
        for i in 0..SEEN_NAMES {
            names.first_time(&format!("other-{i}"));
        }
        assert!(
            names.first_time("LedgerDown"),
            "the oldest name was forgotten"
        );
        let guard = names.seen.lock().expect("lock");
        assert_eq!(guard.1.len(), SEEN_NAMES);
    }

    #[test]
    fn only_the_labels_a_service_is_read_from_are_quoted() {
        let labels: BTreeMap<String, String> = [
            ("alertname", "LedgerDown"),
            ("service", "ledger"),
            ("job", "ledger-exporter"),
            ("severity", "critical"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            service_labels_looked_at(&labels),
            vec![
                ("service".to_owned(), "ledger".to_owned()),
                ("job".to_owned(), "ledger-exporter".to_owned())
            ]
        );
    }
}
