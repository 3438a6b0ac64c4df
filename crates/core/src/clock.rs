//! Time as an injected dependency.
//!
//! Flows never read the system clock directly: they ask a [`Clock`]. Production uses
//! [`SystemClock`]; tests supply their own clock and move it forward to cross expiry boundaries
//! without sleeping.

use chrono::{DateTime, Utc};

/// Source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Truncates to whole milliseconds, the precision both backends store.
#[must_use]
pub fn to_millis_precision(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}
