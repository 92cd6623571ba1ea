//! Handles of recent presses that adapters keep to replace their private replies later.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What an adapter keeps of recent presses (a Discord interaction token, a Slack
/// `response_url`) to replace its private replies later, by the press's delivery id.
/// Bounded at `capacity` entries, the oldest dropped first; an entry older than `ttl` (the
/// platform's own limit on the handle) is never handed out.
pub(crate) struct RecentPresses<T> {
    entries: Mutex<VecDeque<(String, T, Instant)>>,
    capacity: usize,
    ttl: Duration,
}

impl<T: Clone> RecentPresses<T> {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    pub(crate) fn remember(&self, event_id: String, handle: T) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back((event_id, handle, Instant::now()));
    }

    /// The handle of a press, while the platform still accepts it.
    pub(crate) fn live(&self, event_id: &str) -> Option<T> {
        let mut entries = self.lock();
        while entries
            .front()
            .is_some_and(|(_, _, at)| at.elapsed() >= self.ttl)
        {
            entries.pop_front();
        }
        entries
            .iter()
            .rev()
            .find(|(id, _, _)| id == event_id)
            .map(|(_, handle, _)| handle.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, T, Instant)>> {
        crate::sync::lock(&self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_press_is_forgotten_when_full() {
        let recent = RecentPresses::new(2, Duration::from_secs(60));
        for id in ["a", "b", "c"] {
            recent.remember(id.to_owned(), id.to_uppercase());
        }
        assert_eq!(recent.live("a"), None);
        assert_eq!(recent.live("c").as_deref(), Some("C"));
    }

    #[test]
    fn a_handle_past_its_lifetime_is_not_handed_out() {
        let recent = RecentPresses::new(8, Duration::ZERO);
        recent.remember("a".to_owned(), "token".to_owned());
        assert_eq!(recent.live("a"), None);
    }
}
