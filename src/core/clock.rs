//! Time as a dependency, so tests can move it instead of sleeping.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved; for tests and benchmarks.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *crate::sync::lock(&self.0) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = crate::sync::lock(&self.0);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *crate::sync::lock(&self.0)
    }
}

/// The earliest time breakwater accepts from outside (deploy reports, alert webhooks).
/// Nothing it tracks happened before 2000; far earlier times are typos or attacks, and
/// times near chrono's limits overflow any arithmetic done on them later.
pub fn earliest_plausible() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// How far ahead of our clock a sender's clock may run before its times are refused.
pub const MAX_CLOCK_AHEAD: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Why a time from outside was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImplausibleTime {
    #[error("{0} is before 2000-01-01T00:00:00Z")]
    TooEarly(DateTime<Utc>),
    #[error("{0} is more than a day in the future")]
    TooLate(DateTime<Utc>),
}

/// Checks that a time from outside lies between 2000-01-01 and a day after `now`.
pub fn check_plausible(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ImplausibleTime> {
    if at < earliest_plausible() {
        return Err(ImplausibleTime::TooEarly(at));
    }
    if at > latest_plausible(now) {
        return Err(ImplausibleTime::TooLate(at));
    }
    Ok(())
}

/// The latest time accepted from outside when our clock says `now`.
pub fn latest_plausible(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_add_signed(MAX_CLOCK_AHEAD)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at` moved into the plausible range: for input that must not be refused (an alert is
/// never lost over a bad clock), only its time is corrected.
pub fn clamp_plausible(at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    at.clamp(
        earliest_plausible(),
        latest_plausible(now).max(earliest_plausible()),
    )
}

/// `at - by`, saturating at the earliest representable time instead of panicking.
pub fn saturating_sub(at: DateTime<Utc>, by: chrono::TimeDelta) -> DateTime<Utc> {
    at.checked_sub_signed(by)
        .unwrap_or(if by > chrono::TimeDelta::zero() {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

/// `at + by`, saturating at the latest representable time instead of panicking.
pub fn saturating_add(at: DateTime<Utc>, by: chrono::TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(by)
        .unwrap_or(if by > chrono::TimeDelta::zero() {
            DateTime::<Utc>::MAX_UTC
        } else {
            DateTime::<Utc>::MIN_UTC
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_2000_or_more_than_a_day_ahead_are_implausible() {
        let now = Utc::now();
        let ancient =
            DateTime::parse_from_rfc3339("-262143-01-01T00:00:00Z").map(|t| t.with_timezone(&Utc));
        if let Ok(ancient) = ancient {
            assert!(matches!(
                check_plausible(ancient, now),
                Err(ImplausibleTime::TooEarly(_))
            ));
            assert_eq!(clamp_plausible(ancient, now), earliest_plausible());
        }
        assert!(check_plausible(now, now).is_ok());
        let two_days = now + chrono::TimeDelta::days(2);
        assert!(matches!(
            check_plausible(two_days, now),
            Err(ImplausibleTime::TooLate(_))
        ));
        assert_eq!(clamp_plausible(two_days, now), latest_plausible(now));
    }

    #[test]
    fn shifting_the_extreme_times_saturates_instead_of_panicking() {
        let day = chrono::TimeDelta::days(1);
        assert_eq!(
            saturating_sub(DateTime::<Utc>::MIN_UTC, day),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(
            saturating_add(DateTime::<Utc>::MAX_UTC, day),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
