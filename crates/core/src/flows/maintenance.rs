//! Maintenance (seed 004 `/api/admin/clean-*`): removing tokens, codes and sessions that can no
//! longer matter, on an administrator's request and on a schedule.
//!
//! A service of its own, [`Maintenance`], over the store and the clock: it needs nothing else.
//! What each [`Job`] removes, and why the rest stays, is in [`crate::domain::maintenance`]; the
//! store deletes in short batches ([`crate::store::MaintenanceStore::run_maintenance`]).
//!
//! - [`Maintenance::run`]: one job for a caller holding `system:maintain`, audited as
//!   `maintenance.run` (`details.job`, `details.removed`) with the caller as actor, in the
//!   transaction of the job's last batch.
//! - [`Maintenance::run_scheduled`]: every job, plus stale sign-in failure counters and unused
//!   known devices, for the server's timer. It first takes the store's maintenance lock and skips
//!   the round when another instance holds it (PostgreSQL: an advisory lock), so instances
//!   sharing a database take turns instead of deleting side by side. Scheduled rounds are
//!   logged, not audited (one event every few minutes would drown the log).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::clock::Clock;
use crate::config::AuthConfig;
use crate::domain::NewAuditEvent;
use crate::domain::audit::{Outcome, kind};
use crate::domain::maintenance::{Cutoffs, Job};
use crate::domain::rbac::Permission;
use crate::error::Error;
use crate::flows::audit::{committed, new_event};
use crate::flows::email_confirmation::ConfirmationSettings;
use crate::service::Principal;
use crate::store::Store;

/// Rows one statement deletes at most.
pub const DEFAULT_BATCH: u32 = 1_000;

/// The least time an ended session is kept (see [`MaintenanceSettings::session_retention`]).
pub const MIN_SESSION_RETENTION: Duration = Duration::days(1);

/// Failure counters of unknown identifiers idle (and unlocked) for this long go: longer than any
/// lock the configuration allows.
pub const COUNTER_RETENTION: Duration = Duration::days(1);

/// Known devices (their cookies live a year) unused for this long go.
pub const DEVICE_RETENTION: Duration = Duration::days(365);

/// What the jobs keep, from the rest of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceSettings {
    /// How long an ended (revoked or expired) session is kept with its refresh tokens: the
    /// refresh lifetime, at least a day. For one refresh lifetime after a session ended, any
    /// token of its family could still have been within its own lifetime, so a replay is
    /// recognised as reuse (`refresh_token.reused`, a sign that a token was stolen) rather than
    /// refused as unknown; an administrator investigating an account also still sees how its
    /// sessions ended.
    pub session_retention: Duration,
    /// The recovery-mail window (`AuthConfig::recovery_window`): reset tokens issued within it
    /// count towards its limit and stay.
    pub recovery_window: Duration,
    /// The confirmation-link window ([`ConfirmationSettings::window`]), likewise.
    pub confirmation_window: Duration,
    /// Wrong codes that end a second step (`MfaConfig::max_attempts`).
    pub mfa_max_attempts: i32,
    /// Rows per statement.
    pub batch: u32,
}

impl MaintenanceSettings {
    /// The settings that go with this configuration.
    #[must_use]
    pub fn new(auth: &AuthConfig, confirmation: &ConfirmationSettings) -> Self {
        Self {
            session_retention: auth.refresh_ttl.max(MIN_SESSION_RETENTION),
            recovery_window: auth.recovery_window,
            confirmation_window: confirmation.window,
            mfa_max_attempts: auth.mfa.max_attempts,
            batch: DEFAULT_BATCH,
        }
    }
}

/// What a scheduled round removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Rows each job removed, in [`Job::ALL`] order.
    pub jobs: Vec<(Job, u64)>,
    /// Stale failure counters and unused known devices removed.
    pub counters_and_devices: u64,
}

/// The maintenance service.
pub struct Maintenance {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: MaintenanceSettings,
}

impl std::fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintenance")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Maintenance {
    /// The service over `store`.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: MaintenanceSettings,
    ) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &MaintenanceSettings {
        &self.settings
    }

    fn now(&self) -> DateTime<Utc> {
        crate::clock::to_millis_precision(self.clock.now())
    }

    /// The cut-off times of a run starting now.
    #[must_use]
    pub fn cutoffs(&self) -> Cutoffs {
        let now = self.now();
        let s = &self.settings;
        Cutoffs {
            now,
            resets_issued_before: now - s.recovery_window,
            confirmations_issued_before: now - s.confirmation_window,
            sessions_ended_before: now - s.session_retention,
            mfa_max_attempts: s.mfa_max_attempts,
        }
    }

    /// Runs `job` for `principal`, who needs `system:maintain`. Returns how many rows it
    /// removed (for [`Job::Sessions`], sessions).
    ///
    /// # Errors
    /// `Forbidden`; store failures.
    pub async fn run(&self, principal: &Principal, job: Job) -> Result<u64, Error> {
        principal.ensure(Permission::SystemMaintain)?;
        let cut = self.cutoffs();
        // Client address and user agent are read here, in the request's task.
        let template = new_event(
            cut.now,
            kind::MAINTENANCE_RUN,
            Outcome::Success,
            None,
            Some(principal),
            json!({}),
        );
        let events = move |removed: u64| -> Vec<NewAuditEvent> {
            vec![NewAuditEvent {
                details: json!({"job": job.as_str(), "removed": removed}),
                ..template.clone()
            }]
        };
        let removed = self
            .store
            .run_maintenance(job, &cut, self.settings.batch, &events)
            .await?;
        committed(&events(removed));
        Ok(removed)
    }

    /// A scheduled round: every job, then stale failure counters and unused known devices — if
    /// this instance gets the maintenance lock. `None` when another instance holds it (it is
    /// running the round).
    ///
    /// # Errors
    /// Store failures (what earlier batches removed stays removed).
    pub async fn run_scheduled(&self) -> Result<Option<Round>, Error> {
        let Some(lock) = self.store.try_maintenance_lock().await? else {
            return Ok(None);
        };
        let round = self.round().await;
        let released = lock.release().await;
        let round = round?;
        released?;
        Ok(Some(round))
    }

    async fn round(&self) -> Result<Round, Error> {
        let cut = self.cutoffs();
        let mut round = Round::default();
        for job in Job::ALL {
            let removed = self
                .store
                .run_maintenance(job, &cut, self.settings.batch, &|_| Vec::new())
                .await?;
            round.jobs.push((job, removed));
        }
        round.counters_and_devices = self
            .store
            .purge_expired(cut.now - COUNTER_RETENTION, cut.now - DEVICE_RETENTION)
            .await?;
        Ok(round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_kept_one_refresh_lifetime_and_at_least_a_day() {
        let confirmation = ConfirmationSettings::new(String::new(), String::new());
        let auth = AuthConfig::default();
        let s = MaintenanceSettings::new(&auth, &confirmation);
        assert_eq!(s.session_retention, Duration::days(7));
        assert_eq!(s.recovery_window, Duration::minutes(15));
        assert_eq!(s.confirmation_window, Duration::hours(1));
        let short = AuthConfig {
            refresh_ttl: Duration::minutes(30),
            ..AuthConfig::default()
        };
        assert_eq!(
            MaintenanceSettings::new(&short, &confirmation).session_retention,
            MIN_SESSION_RETENTION
        );
    }
}
