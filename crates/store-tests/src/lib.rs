//! The store contract: behaviours every [`Store`] must have, written once and run against each
//! backend. Each backend's `tests/contract.rs` expands [`contract_tests!`] into one test per
//! function here, each on a fresh, empty database.
//!
//! Functions take an `Arc<dyn Store>` and use fixed times, never the wall clock.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use porteiro_core::domain::session::{NewRefreshToken, RotateOutcome};
use porteiro_core::domain::{NewSession, NewUser, ProfileUpdate, User, UserQuery};
use porteiro_core::store::{Store, StoreError, StoredKey};
use uuid::Uuid;

mod credentials;
mod email_confirmation;
mod emails;
mod envelope;
mod events;
mod maintenance;
mod messages;
mod mfa;
mod rbac;
mod recovery_emails;
mod refresh;
mod security_questions;
mod sign_in_alerts;
mod users;
mod webhooks;
pub use credentials::*;
pub use email_confirmation::*;
pub use emails::*;
pub use envelope::*;
pub use events::*;
pub use maintenance::*;
pub use messages::*;
pub use mfa::*;
pub use rbac::*;
pub use recovery_emails::*;
pub use refresh::*;
pub use security_questions::*;
pub use sign_in_alerts::*;
pub use users::*;
pub use webhooks::*;

/// An event to hand to store calls that take one, when the test is not about events.
pub(crate) fn ev() -> porteiro_core::domain::NewAuditEvent {
    porteiro_core::domain::NewAuditEvent {
        occurred_at: t0(),
        event_type: porteiro_core::domain::audit::kind::SIGN_IN_FAILED,
        outcome: porteiro_core::domain::Outcome::Failure,
        user_id: None,
        actor_id: None,
        ip_address: None,
        user_agent: None,
        details: serde_json::json!({"test": true}),
    }
}

/// The reuse event maker for rotations in tests that are not about events.
pub(crate) fn no_reuse(user_id: Uuid, session_id: Uuid) -> porteiro_core::domain::NewAuditEvent {
    porteiro_core::domain::NewAuditEvent {
        user_id: Some(user_id),
        details: serde_json::json!({"session_id": session_id}),
        ..ev()
    }
}

/// Generates one `#[tokio::test]` per contract function. `$make` is an async expression
/// producing a fresh `Arc<dyn Store>`, or `None` to skip (with a notice) when the backend is
/// not available.
#[macro_export]
macro_rules! contract_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(store) = $make else { return };
                $crate::$name(store).await;
            }
        )*
    };
}

/// Every contract function name, for [`contract_tests!`].
#[macro_export]
macro_rules! all_contract_tests {
    ($make:expr) => {
        $crate::contract_tests!($make;
            insert_user_returns_the_stored_user,
            usernames_are_unique_case_insensitively,
            emails_are_unique,
            user_lookups_by_id_login_and_email,
            list_users_pages_in_creation_order_with_total,
            update_profile_changes_only_given_fields,
            update_profile_of_unknown_user_is_not_found,
            delete_user_removes_everything_and_returns_its_sessions,
            upgrade_password_hash_is_compare_and_set,
            failed_logins_lock_at_the_threshold_without_extending,
            failures_after_a_lock_ran_out_start_over,
            unknown_identifiers_lock_like_accounts,
            successful_login_and_unlock_clear_the_lock,
            change_password_revokes_other_sessions_and_reset_tokens,
            sessions_are_created_with_their_first_refresh_token,
            session_auth_state_follows_revocation_and_user_state,
            active_sessions_exclude_revoked_and_expired,
            rename_session_only_for_its_owner,
            revoke_session_only_for_its_owner_and_once,
            revoke_all_sessions_can_keep_one,
            rotation_spends_the_token_and_issues_the_next,
            reuse_of_a_spent_token_revokes_only_its_family,
            expired_or_unknown_refresh_tokens_are_invalid,
            rotation_on_a_revoked_session_is_invalid,
            concurrent_rotation_has_exactly_one_winner,
            a_just_spent_token_is_replayed_into_its_successor,
            replay_ends_once_the_successor_is_spent,
            replay_ends_with_the_grace_window,
            replay_needs_the_true_successor,
            replay_does_not_revive_an_ended_session,
            racing_refreshes_keep_exactly_one_live_family,
            refresh_token_session_finds_only_live_tokens,
            a_new_reset_token_replaces_older_ones,
            reset_tokens_are_limited_per_window,
            audit_events_are_listed_newest_first_with_filters,
            purge_removes_only_what_can_no_longer_matter,
            known_devices_lock_on_their_own_and_are_capped,
            bulk_loads_are_all_or_nothing,
            reset_token_owner_respects_expiry,
            complete_reset_is_single_use_and_revokes_every_session,
            complete_reset_needs_the_owner,
            confirmation_links_confirm_their_address_once,
            a_new_confirmation_link_spends_older_ones,
            confirmation_links_expire,
            confirmation_links_are_limited_per_window,
            a_confirmation_link_needs_the_address_it_was_sent_to,
            disabled_accounts_neither_get_nor_use_confirmation_links,
            concurrent_confirmations_have_one_winner,
            accounts_can_be_created_confirmed,
            purge_removes_expired_confirmation_links,
            signing_keys_are_listed_newest_first,
            sessions_need_the_credential_epoch_they_were_verified_at,
            every_credential_event_moves_the_epoch,
            concurrent_password_changes_with_one_epoch_have_one_winner,
            sign_ins_racing_a_reset_never_leave_a_live_session,
            disabled_accounts_cannot_complete_a_reset,
            refresh_never_extends_a_session_past_its_maximum_lifetime,
            retired_keys_are_marked_and_erased_once,
            census_counts_hashes_with_other_parameters,
            legacy_emails_are_found_and_rewritten_without_collisions,
            outbox_claims_due_mail_once_per_lease,
            outbox_sent_mail_is_erased,
            outbox_failed_mail_is_retried_or_abandoned,
            webhook_endpoints_round_trip_and_rotate_their_secret,
            events_fan_out_to_enabled_subscribed_endpoints,
            webhook_claims_are_leases,
            deliveries_of_disabled_endpoints_wait,
            webhook_attempts_deliver_retry_or_die,
            enabling_an_endpoint_clears_its_failure,
            webhook_delivery_log_pages_newest_first,
            webhook_events_are_replayed_by_id_or_time_range,
            test_events_go_to_their_endpoint_only,
            purge_removes_completed_deliveries_only,
            deleting_an_endpoint_removes_its_deliveries,
            concurrent_webhook_claims_never_share_a_delivery,
            ping_answers,
            active_administrators_are_the_active_admins_oldest_first,
            events_commit_with_their_change,
            calls_that_change_nothing_write_no_event,
            a_refused_change_takes_its_events_with_it,
            lock_events_are_written_only_by_the_failure_that_locks,
            reuse_of_a_spent_token_writes_its_event_with_the_revocation,
            totp_setup_stays_pending_until_its_own_secret_enables_it,
            totp_steps_are_accepted_once_and_only_forward,
            backup_codes_are_single_use_and_die_with_their_set,
            disabling_totp_removes_the_credential_and_its_codes,
            concurrent_spends_of_one_code_have_one_winner,
            challenges_are_found_only_while_live,
            wrong_codes_count_up_to_the_limit_then_the_challenge_is_dead,
            completing_spends_the_challenge_and_the_factor_and_clears_failures,
            a_refused_completion_changes_nothing,
            emailed_codes_complete_while_current_and_unexpired,
            mailing_codes_is_limited_in_count_and_interval,
            concurrent_requests_mail_one_code,
            a_locked_account_completes_only_from_a_known_device,
            concurrent_completions_of_one_challenge_have_one_winner,
            one_code_completes_only_one_of_several_challenges,
            mfa_events_are_written_only_with_their_change,
            sessions_keep_the_methods_they_were_opened_with,
            purge_removes_expired_challenges,
            deleting_an_account_removes_its_factors_and_challenges,
            builtins_exist_with_fixed_ids,
            rbac_objects_are_unique_and_built_ins_protected,
            links_change_once_and_show_in_grants,
            the_last_administrator_cannot_lose_the_role,
            concurrent_removals_leave_one_administrator,
            the_tokens_job_removes_dead_tokens_and_keeps_reuse_detection,
            the_verification_codes_job_removes_dead_links_and_second_steps,
            the_verification_codes_job_removes_dead_recovery_proofs,
            the_sessions_job_removes_long_ended_sessions_in_batches,
            a_run_writes_its_events_once_with_its_last_batch,
            the_maintenance_lock_has_one_holder_at_a_time,
            user_search_matches_email_or_username_prefixes,
            user_list_filters_by_state_and_role,
            the_last_admin_can_be_neither_deleted_nor_disabled,
            concurrent_removals_of_the_last_two_admins_leave_one,
            email_change_links_change_the_address_when_used,
            email_change_links_follow_the_confirmation_rules,
            an_email_change_to_a_taken_address_changes_nothing,
            concurrent_uses_of_one_email_change_link_have_one_winner,
            recovery_emails_are_added_once_and_at_most_five,
            recovery_email_tokens_verify_once_before_they_expire,
            a_new_recovery_email_token_spends_the_older_ones_within_limits,
            recovery_email_tokens_are_limited_per_account,
            a_verified_recovery_email_has_one_owner,
            concurrent_verifications_of_one_address_have_one_owner,
            deleting_a_recovery_email_or_its_account_takes_its_tokens,
            the_verification_codes_job_removes_dead_recovery_email_links,
            only_a_new_device_of_an_account_seen_before_is_alerted,
            a_device_cookie_issued_with_a_sign_in_is_known_next_time,
            accounts_that_turned_alerts_off_get_none,
            disowning_ends_only_its_session_once_and_requires_a_reset,
            disowning_ends_every_session_of_that_device_only,
            a_reset_clears_the_required_reset,
            expired_alert_links_do_nothing_and_are_purged,
            login_history_lists_the_accounts_own_sign_ins_newest_first,
            security_questions_are_unique_and_deleted_with_their_answers,
            security_answers_are_bounded_and_listed_without_hashes,
            wrong_answers_lock_and_proofs_follow_the_answers,
            resets_of_accounts_with_questions_need_a_proof,
            key_encryption_key_versions_are_added_once_and_retired_when_unused,
            one_data_key_per_owner_and_rewraps_apply_only_to_what_was_read,
            deleting_an_account_records_its_data_key_as_destroyed,
            old_style_sealed_values_are_listed_and_replaced_only_if_unchanged,
            messages_are_listed_per_folder_newest_first_with_totals,
            only_the_parties_see_a_message_and_only_the_recipient_marks_it_read,
            deleting_a_message_drops_only_the_callers_copy,
            account_deletion_keeps_the_other_partys_copy,
            accounts_accept_messages_until_they_turn_them_off,
        );
    };
}

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

pub(crate) fn new_user(name: &str) -> NewUser {
    NewUser {
        id: Uuid::now_v7(),
        username: name.to_owned(),
        username_key: name.to_ascii_lowercase(),
        email: format!("{}@example.com", name.to_ascii_lowercase()),
        first_name: Some("Ana".to_owned()),
        last_name: None,
        password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
        is_admin: false,
        locale: "en".to_owned(),
        now: t0(),
        email_verified: false,
    }
}

pub(crate) async fn user(store: &Arc<dyn Store>, name: &str) -> User {
    store.insert_user(&new_user(name), &[]).await.unwrap()
}

pub(crate) fn hash(label: &str) -> String {
    format!("{label:0>64}")
}

/// A new session of `user` created at `now`, expiring a day later, bound to credential `epoch`.
fn new_session(
    user: &User,
    refresh: &str,
    now: DateTime<Utc>,
    epoch: i64,
) -> (NewSession, NewRefreshToken) {
    let id = Uuid::new_v4();
    let expires_at = now + Duration::days(1);
    (
        NewSession {
            id,
            user_id: user.id,
            now,
            expires_at,
            ip_address: Some("192.0.2.1".to_owned()),
            user_agent: Some("test-agent".to_owned()),
            device_name: "Firefox on Linux".to_owned(),
            device_type: "pc".to_owned(),
            os: Some("Linux".to_owned()),
            browser: Some("Firefox".to_owned()),
            credential_epoch: epoch,
            amr: vec!["pwd".to_owned()],
        },
        NewRefreshToken {
            token_hash: hash(refresh),
            session_id: id,
            expires_at,
            now,
        },
    )
}

/// Creates a session for `user` (at its current credential epoch) with refresh token hash
/// `refresh`, expiring a day after `t0`.
pub(crate) async fn session(store: &Arc<dyn Store>, user: &User, refresh: &str) -> Uuid {
    let epoch = store
        .user_by_id(user.id)
        .await
        .unwrap()
        .expect("user exists")
        .credential_epoch;
    let (s, r) = new_session(user, refresh, t0(), epoch);
    store
        .create_session(&s, &r, &[])
        .await
        .unwrap()
        .expect("session created at the current epoch");
    s.id
}

async fn rotate(
    store: &Arc<dyn Store>,
    presented: &str,
    next: &str,
    at: DateTime<Utc>,
) -> RotateOutcome {
    rotate_within(store, presented, next, at, None).await
}

/// A rotation at `at` with the grace window reaching back to `reuse_since`.
pub(crate) async fn rotate_within(
    store: &Arc<dyn Store>,
    presented: &str,
    next: &str,
    at: DateTime<Utc>,
    reuse_since: Option<DateTime<Utc>>,
) -> RotateOutcome {
    store
        .rotate_refresh_token(
            &hash(presented),
            &hash(next),
            at + Duration::days(1),
            Duration::days(30),
            Some("198.51.100.7"),
            at,
            reuse_since,
            &crate::no_reuse,
        )
        .await
        .unwrap()
}

// ---------------------------------------------------------------- users

pub async fn insert_user_returns_the_stored_user(store: Arc<dyn Store>) {
    let input = new_user("Ana_Silva");
    let stored = store.insert_user(&input, &[]).await.unwrap();
    assert_eq!(stored.id, input.id);
    assert_eq!(stored.username, "Ana_Silva");
    assert_eq!(stored.email, "ana_silva@example.com");
    assert_eq!(stored.first_name.as_deref(), Some("Ana"));
    assert!(stored.is_active && stored.roles == ["user"] && !stored.email_verified);
    assert_eq!(stored.failed_login_attempts, 0);
    assert_eq!(stored.locked_until, None);
    assert_eq!(stored.created_at, t0());
    assert_eq!(store.count_users().await.unwrap(), 1);
}

pub async fn usernames_are_unique_case_insensitively(store: Arc<dyn Store>) {
    user(&store, "maria").await;
    let mut dup = new_user("MARIA");
    dup.email = "other@example.com".to_owned();
    let err = store.insert_user(&dup, &[]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "username" }),
        "{err:?}"
    );
}

pub async fn emails_are_unique(store: Arc<dyn Store>) {
    user(&store, "maria").await;
    let mut dup = new_user("joao");
    dup.email = "maria@example.com".to_owned();
    let err = store.insert_user(&dup, &[]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "email" }),
        "{err:?}"
    );
    assert_eq!(store.count_users().await.unwrap(), 1);
}

pub async fn user_lookups_by_id_login_and_email(store: Arc<dyn Store>) {
    let u = user(&store, "Pedro").await;
    assert_eq!(store.user_by_id(u.id).await.unwrap().unwrap().id, u.id);
    assert!(store.user_by_id(Uuid::new_v4()).await.unwrap().is_none());
    assert_eq!(
        store.user_by_login("pedro").await.unwrap().unwrap().id,
        u.id
    );
    assert_eq!(
        store
            .user_by_login("pedro@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        u.id
    );
    assert!(
        store.user_by_login("Pedro").await.unwrap().is_none(),
        "logins arrive lower-cased"
    );
    assert_eq!(
        store
            .user_by_email("pedro@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        u.id
    );
    assert!(store.user_by_email("pedro").await.unwrap().is_none());
}

pub async fn list_users_pages_in_creation_order_with_total(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut n = new_user(&format!("user{i}"));
        n.now = t0() + Duration::seconds(i);
        ids.push(store.insert_user(&n, &[]).await.unwrap().id);
    }
    let all = UserQuery::all(t0());
    let (page, total) = store.list_users(&all, 2, 2).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(page.iter().map(|u| u.id).collect::<Vec<_>>(), ids[2..4]);
    let (last, _) = store.list_users(&all, 4, 10).await.unwrap();
    assert_eq!(last.len(), 1);
}

pub async fn update_profile_changes_only_given_fields(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let later = t0() + Duration::minutes(1);
    let update = ProfileUpdate {
        last_name: Some(Some("Souza".to_owned())),
        locale: Some("pt-BR".to_owned()),
        ..Default::default()
    };
    let changed = store
        .update_profile(u.id, &update, later, &[])
        .await
        .unwrap();
    assert_eq!(changed.first_name.as_deref(), Some("Ana"));
    assert_eq!(changed.last_name.as_deref(), Some("Souza"));
    assert_eq!(changed.locale, "pt-BR");
    assert!(changed.is_active);
    assert_eq!(changed.updated_at, later);
    let cleared = store
        .update_profile(
            u.id,
            &ProfileUpdate {
                first_name: Some(None),
                is_active: Some(false),
                ..Default::default()
            },
            later,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(cleared.first_name, None);
    assert_eq!(cleared.last_name.as_deref(), Some("Souza"));
    assert!(!cleared.is_active);
}

pub async fn update_profile_of_unknown_user_is_not_found(store: Arc<dyn Store>) {
    let err = store
        .update_profile(Uuid::new_v4(), &ProfileUpdate::default(), t0(), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound));
}

pub async fn delete_user_removes_everything_and_returns_its_sessions(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let s = session(&store, &u, "r1").await;
    store
        .replace_reset_token(
            u.id,
            &hash("reset"),
            t0() + Duration::minutes(30),
            t0(),
            t0() - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(store.delete_user(u.id, &[]).await.unwrap(), Some(vec![s]));
    assert!(store.user_by_id(u.id).await.unwrap().is_none());
    assert!(store.session_by_id(s).await.unwrap().is_none());
    assert!(
        store
            .reset_token_owner(&hash("reset"), t0())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.delete_user(u.id, &[]).await.unwrap(), None);
}

pub async fn upgrade_password_hash_is_compare_and_set(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    assert!(
        store
            .upgrade_password_hash(u.id, &u.password_hash, "new-hash")
            .await
            .unwrap()
    );
    assert!(
        !store
            .upgrade_password_hash(u.id, &u.password_hash, "newer-hash")
            .await
            .unwrap()
    );
    assert_eq!(
        store.user_by_id(u.id).await.unwrap().unwrap().password_hash,
        "new-hash"
    );
}

pub async fn failed_logins_lock_at_the_threshold_without_extending(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let lock = |at: DateTime<Utc>| at + Duration::minutes(5);
    for i in 0..4 {
        let at = t0() + Duration::seconds(i);
        assert!(
            !store
                .record_failed_login(u.id, at, 5, lock(at), &crate::ev(), &crate::ev())
                .await
                .unwrap()
        );
    }
    let before = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(before.failed_login_attempts, 4);
    assert_eq!(before.locked_until, None);
    let fifth = t0() + Duration::seconds(10);
    assert!(
        store
            .record_failed_login(u.id, fifth, 5, lock(fifth), &crate::ev(), &crate::ev())
            .await
            .unwrap(),
        "the failure that locks says so"
    );
    let locked = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(locked.locked_until, Some(lock(fifth)));
    assert!(locked.is_locked(fifth));
    let during = fifth + Duration::minutes(2);
    assert!(
        !store
            .record_failed_login(u.id, during, 5, lock(during), &crate::ev(), &crate::ev())
            .await
            .unwrap()
    );
    let still = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(
        still.locked_until,
        Some(lock(fifth)),
        "failures during a lock do not extend it"
    );
    assert_eq!(still.failed_login_attempts, 5);
}

pub async fn failures_after_a_lock_ran_out_start_over(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    for _ in 0..5 {
        store
            .record_failed_login(
                u.id,
                t0(),
                5,
                t0() + Duration::minutes(5),
                &crate::ev(),
                &crate::ev(),
            )
            .await
            .unwrap();
    }
    let after = t0() + Duration::minutes(6);
    store
        .record_failed_login(
            u.id,
            after,
            5,
            after + Duration::minutes(5),
            &crate::ev(),
            &crate::ev(),
        )
        .await
        .unwrap();
    let u = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(u.failed_login_attempts, 1);
    assert!(!u.is_locked(after));
}

pub async fn unknown_identifiers_lock_like_accounts(store: Arc<dyn Store>) {
    let key = hash("nobody@example.com");
    assert_eq!(store.unknown_login_state(&key).await.unwrap(), None);
    let lock = |at: DateTime<Utc>| at + Duration::minutes(5);
    for i in 0..4 {
        let at = t0() + Duration::seconds(i);
        store
            .record_failed_login_unknown(&key, at, 5, lock(at), &[])
            .await
            .unwrap();
    }
    assert_eq!(
        store.unknown_login_state(&key).await.unwrap(),
        Some((4, None))
    );
    let fifth = t0() + Duration::seconds(10);
    store
        .record_failed_login_unknown(&key, fifth, 5, lock(fifth), &[])
        .await
        .unwrap();
    assert_eq!(
        store.unknown_login_state(&key).await.unwrap(),
        Some((5, Some(lock(fifth))))
    );
    let during = fifth + Duration::minutes(1);
    store
        .record_failed_login_unknown(&key, during, 5, lock(during), &[])
        .await
        .unwrap();
    assert_eq!(
        store.unknown_login_state(&key).await.unwrap(),
        Some((5, Some(lock(fifth)))),
        "not extended"
    );
    let after = fifth + Duration::minutes(6);
    store
        .record_failed_login_unknown(&key, after, 5, lock(after), &[])
        .await
        .unwrap();
    assert_eq!(
        store.unknown_login_state(&key).await.unwrap(),
        Some((1, None)),
        "starts over"
    );
    assert_eq!(
        store.unknown_login_state(&hash("other")).await.unwrap(),
        None
    );
}

pub async fn successful_login_and_unlock_clear_the_lock(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let locked_until = t0() + Duration::minutes(5);
    let attempts = |store: &Arc<dyn Store>| {
        let store = store.clone();
        async move { store.user_by_id(u.id).await.unwrap().unwrap() }
    };
    store
        .record_failed_login(u.id, t0(), 5, locked_until, &crate::ev(), &crate::ev())
        .await
        .unwrap();
    assert!(store.record_successful_login(u.id, t0()).await.unwrap());
    assert_eq!(attempts(&store).await.failed_login_attempts, 0);
    for _ in 0..5 {
        store
            .record_failed_login(u.id, t0(), 5, locked_until, &crate::ev(), &crate::ev())
            .await
            .unwrap();
    }
    assert!(attempts(&store).await.is_locked(t0()));
    assert!(
        !store.record_successful_login(u.id, t0()).await.unwrap(),
        "a lock set meanwhile refuses the sign-in"
    );
    assert!(
        attempts(&store).await.is_locked(t0()),
        "and is not cleared by it"
    );
    let later = t0() + Duration::minutes(6);
    assert!(
        store.record_successful_login(u.id, later).await.unwrap(),
        "an expired lock is cleared"
    );
    assert_eq!(attempts(&store).await.locked_until, None);
    for _ in 0..5 {
        store
            .record_failed_login(u.id, t0(), 5, locked_until, &crate::ev(), &crate::ev())
            .await
            .unwrap();
    }
    assert!(store.unlock_user(u.id, t0(), &[]).await.unwrap());
    let unlocked = attempts(&store).await;
    assert!(!unlocked.is_locked(t0()));
    assert_eq!(unlocked.failed_login_attempts, 0);
    assert!(!store.unlock_user(Uuid::new_v4(), t0(), &[]).await.unwrap());
}

pub async fn change_password_revokes_other_sessions_and_reset_tokens(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let other_user = user(&store, "bia").await;
    let keep = session(&store, &u, "keep").await;
    let gone = session(&store, &u, "gone").await;
    let foreign = session(&store, &other_user, "foreign").await;
    store
        .replace_reset_token(
            u.id,
            &hash("reset"),
            t0() + Duration::minutes(30),
            t0(),
            t0() - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    let revoked = store
        .change_password(u.id, "h2", Some(keep), None, t0(), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked, vec![gone]);
    assert_eq!(
        store.user_by_id(u.id).await.unwrap().unwrap().password_hash,
        "h2"
    );
    assert!(
        store
            .session_by_id(keep)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        store
            .session_by_id(gone)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        store
            .session_by_id(foreign)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        store
            .reset_token_owner(&hash("reset"), t0())
            .await
            .unwrap()
            .is_none()
    );
    let all = store
        .change_password(u.id, "h3", None, None, t0(), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, vec![keep]);
    assert_eq!(
        store
            .change_password(Uuid::new_v4(), "h", None, None, t0(), &[])
            .await
            .unwrap(),
        None
    );
}

// ---------------------------------------------------------------- sessions

pub async fn sessions_are_created_with_their_first_refresh_token(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let id = session(&store, &u, "r1").await;
    let s = store.session_by_id(id).await.unwrap().unwrap();
    assert_eq!(s.user_id, u.id);
    assert_eq!(s.created_at, t0());
    assert_eq!(s.last_active_at, t0());
    assert_eq!(s.expires_at, t0() + Duration::days(1));
    assert_eq!(s.device_name, "Firefox on Linux");
    assert_eq!(s.ip_address.as_deref(), Some("192.0.2.1"));
    assert!(s.is_active(t0()));
    assert_eq!(
        store
            .refresh_token_session(&hash("r1"), t0())
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    assert!(store.session_by_id(Uuid::new_v4()).await.unwrap().is_none());
}

pub async fn session_auth_state_follows_revocation_and_user_state(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let id = session(&store, &u, "r1").await;
    let state = store.session_auth_state(id).await.unwrap().unwrap();
    assert!(state.usable);
    assert_eq!(state.user_id, u.id);
    store
        .update_profile(
            u.id,
            &ProfileUpdate {
                is_active: Some(false),
                ..Default::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap();
    assert!(
        !store.session_auth_state(id).await.unwrap().unwrap().usable,
        "disabled user"
    );
    store
        .update_profile(
            u.id,
            &ProfileUpdate {
                is_active: Some(true),
                ..Default::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap();
    assert!(store.revoke_session(u.id, id, t0(), &[]).await.unwrap());
    assert!(
        !store.session_auth_state(id).await.unwrap().unwrap().usable,
        "revoked session"
    );
    assert!(
        store
            .session_auth_state(Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn active_sessions_exclude_revoked_and_expired(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let a = session(&store, &u, "a").await;
    let b = session(&store, &u, "b").await;
    let c = session(&store, &u, "c").await;
    store.revoke_session(u.id, b, t0(), &[]).await.unwrap();
    // Refreshing `c` later makes it the most recently active.
    rotate(&store, "c", "c2", t0() + Duration::minutes(1)).await;
    let listed: Vec<Uuid> = store
        .list_active_sessions(u.id, t0() + Duration::minutes(2))
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![c, a]);
    let much_later = t0() + Duration::days(1) + Duration::seconds(30);
    let listed: Vec<Uuid> = store
        .list_active_sessions(u.id, much_later)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![c], "a expired; c was extended by its refresh");
}

pub async fn rename_session_only_for_its_owner(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let other = user(&store, "bia").await;
    let id = session(&store, &u, "r").await;
    assert!(
        store
            .rename_session(other.id, id, "Stolen", t0())
            .await
            .unwrap()
            .is_none()
    );
    let renamed = store
        .rename_session(u.id, id, "Work laptop", t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.device_name, "Work laptop");
    store.revoke_session(u.id, id, t0(), &[]).await.unwrap();
    assert!(
        store
            .rename_session(u.id, id, "Again", t0())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn revoke_session_only_for_its_owner_and_once(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let other = user(&store, "bia").await;
    let id = session(&store, &u, "r").await;
    assert!(!store.revoke_session(other.id, id, t0(), &[]).await.unwrap());
    assert!(store.revoke_session(u.id, id, t0(), &[]).await.unwrap());
    assert!(!store.revoke_session(u.id, id, t0(), &[]).await.unwrap());
    assert!(
        store
            .refresh_token_session(&hash("r"), t0())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn revoke_all_sessions_can_keep_one(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let other = user(&store, "bia").await;
    let a = session(&store, &u, "a").await;
    let b = session(&store, &u, "b").await;
    let foreign = session(&store, &other, "f").await;
    let mut revoked = store
        .revoke_all_sessions(u.id, Some(a), t0(), &[])
        .await
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, vec![b]);
    assert_eq!(
        store
            .revoke_all_sessions(u.id, None, t0(), &[])
            .await
            .unwrap(),
        vec![a]
    );
    assert!(
        store
            .revoke_all_sessions(u.id, None, t0(), &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .session_by_id(foreign)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
}

pub async fn rotation_spends_the_token_and_issues_the_next(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let id = session(&store, &u, "r1").await;
    let later = t0() + Duration::minutes(10);
    let RotateOutcome::Rotated(rotation) = rotate(&store, "r1", "r2", later).await else {
        panic!("expected rotation")
    };
    let s = rotation.session;
    assert_eq!(rotation.user.id, u.id, "the account comes with the session");
    assert_eq!(rotation.user.username, u.username);
    assert!(rotation.user.is_active);
    assert_eq!(s.id, id);
    assert_eq!(s.last_active_at, later);
    assert_eq!(s.expires_at, later + Duration::days(1));
    assert_eq!(s.ip_address.as_deref(), Some("198.51.100.7"));
    assert!(
        store
            .refresh_token_session(&hash("r1"), later)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .refresh_token_session(&hash("r2"), later)
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    assert!(matches!(
        rotate(&store, "r2", "r3", later).await,
        RotateOutcome::Rotated(_)
    ));
}

pub async fn reuse_of_a_spent_token_revokes_only_its_family(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let victim = session(&store, &u, "r1").await;
    session(&store, &u, "o1").await;
    assert!(matches!(
        rotate(&store, "r1", "r2", t0()).await,
        RotateOutcome::Rotated(_)
    ));
    let reuse = rotate(&store, "r1", "x", t0()).await;
    assert_eq!(
        reuse,
        RotateOutcome::ReuseDetected {
            session_id: victim,
            user_id: u.id
        }
    );
    assert!(
        store
            .session_by_id(victim)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert_eq!(
        rotate(&store, "r2", "r3", t0()).await,
        RotateOutcome::Invalid,
        "the family's live token died too"
    );
    assert!(
        matches!(
            rotate(&store, "o1", "o2", t0()).await,
            RotateOutcome::Rotated(_)
        ),
        "other family untouched"
    );
}

pub async fn expired_or_unknown_refresh_tokens_are_invalid(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    session(&store, &u, "r1").await;
    assert_eq!(
        rotate(&store, "nope", "x", t0()).await,
        RotateOutcome::Invalid
    );
    let after_expiry = t0() + Duration::days(1) + Duration::seconds(1);
    assert_eq!(
        rotate(&store, "r1", "x", after_expiry).await,
        RotateOutcome::Invalid
    );
}

pub async fn rotation_on_a_revoked_session_is_invalid(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let id = session(&store, &u, "r1").await;
    store.revoke_session(u.id, id, t0(), &[]).await.unwrap();
    assert_eq!(
        rotate(&store, "r1", "r2", t0()).await,
        RotateOutcome::Invalid
    );
    assert!(
        store
            .refresh_token_session(&hash("r2"), t0())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn concurrent_rotation_has_exactly_one_winner(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    session(&store, &u, "r1").await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { rotate(&store, "r1", &format!("next{i}"), t0()).await })
        })
        .collect();
    let outcomes = futures::future::join_all(tasks).await;
    let winners = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), RotateOutcome::Rotated(_)))
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
}

pub async fn refresh_token_session_finds_only_live_tokens(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let id = session(&store, &u, "r1").await;
    assert_eq!(
        store
            .refresh_token_session(&hash("r1"), t0())
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    assert!(
        store
            .refresh_token_session(&hash("r1"), t0() + Duration::days(2))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .refresh_token_session(&hash("unknown"), t0())
            .await
            .unwrap()
            .is_none()
    );
}

// ---------------------------------------------------------------- bulk

pub async fn bulk_loads_are_all_or_nothing(store: Arc<dyn Store>) {
    let batch: Vec<NewUser> = (0..3).map(|i| new_user(&format!("bulk{i}"))).collect();
    assert_eq!(store.insert_users_bulk(&batch).await.unwrap(), 3);
    let found = store
        .user_by_login("bulk2@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id, found.first_name.as_deref()),
        (batch[2].id, Some("Ana"))
    );
    assert_eq!(found.created_at, t0());
    // One duplicate refuses the whole batch.
    let clash = vec![new_user("fresh"), new_user("BULK1")];
    assert!(matches!(
        store.insert_users_bulk(&clash).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(store.user_by_login("fresh").await.unwrap().is_none());
    assert_eq!(store.count_users().await.unwrap(), 3);

    let events: Vec<_> = (0..4)
        .map(|i| porteiro_core::domain::NewAuditEvent {
            occurred_at: t0() + Duration::seconds(i),
            event_type: "sign_in.failed",
            outcome: porteiro_core::domain::Outcome::Failure,
            user_id: (i % 2 == 0).then_some(found.id),
            actor_id: None,
            ip_address: Some(format!("192.0.2.{i}")),
            user_agent: None,
            details: serde_json::json!({"n": i}),
        })
        .collect();
    assert_eq!(store.append_audit_bulk(&events).await.unwrap(), 4);
    let listed = store
        .list_audit(&porteiro_core::domain::AuditFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].details["n"], 3);
    assert_eq!(listed[0].ip_address.as_deref(), Some("192.0.2.3"));
    assert_eq!(listed[1].user_id, Some(found.id));
}

// ---------------------------------------------------------------- browsers

pub async fn known_devices_lock_on_their_own_and_are_capped(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let lock = |at: DateTime<Utc>| at + Duration::minutes(5);
    assert!(
        store
            .remember_device(u.id, &hash("d0"), "192.0.2.1", t0())
            .await
            .unwrap()
    );
    let d = store
        .known_device(u.id, &hash("d0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.user_id, d.ip_address.as_str(), d.failed_login_attempts),
        (u.id, "192.0.2.1", 0)
    );
    assert!(
        store
            .known_device(Uuid::nil(), &hash("d0"))
            .await
            .unwrap()
            .is_none()
    );
    for i in 0..4 {
        let at = t0() + Duration::seconds(i);
        assert!(
            !store
                .record_device_failure(
                    u.id,
                    &hash("d0"),
                    at,
                    5,
                    lock(at),
                    &crate::ev(),
                    &crate::ev()
                )
                .await
                .unwrap()
        );
    }
    let fifth = t0() + Duration::seconds(10);
    assert!(
        store
            .record_device_failure(
                u.id,
                &hash("d0"),
                fifth,
                5,
                lock(fifth),
                &crate::ev(),
                &crate::ev()
            )
            .await
            .unwrap()
    );
    let locked = store
        .known_device(u.id, &hash("d0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(locked.locked_until, Some(lock(fifth)));
    // The account itself is untouched.
    assert_eq!(
        store
            .user_by_id(u.id)
            .await
            .unwrap()
            .unwrap()
            .failed_login_attempts,
        0
    );
    // A locked device cannot be refreshed until its lock ends.
    assert!(
        !store
            .remember_device(u.id, &hash("d0"), "192.0.2.1", fifth)
            .await
            .unwrap()
    );
    let after = lock(fifth) + Duration::seconds(1);
    assert!(
        store
            .remember_device(u.id, &hash("d0"), "192.0.2.9", after)
            .await
            .unwrap()
    );
    let fresh = store
        .known_device(u.id, &hash("d0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            fresh.ip_address.as_str(),
            fresh.failed_login_attempts,
            fresh.locked_until
        ),
        ("192.0.2.9", 0, None)
    );
    // Only the most recent devices are kept.
    for i in 1..=porteiro_core::store::MAX_KNOWN_DEVICES {
        let at = after + Duration::seconds(i);
        assert!(
            store
                .remember_device(u.id, &hash(&format!("d{i}")), "192.0.2.1", at)
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .known_device(u.id, &hash("d0"))
            .await
            .unwrap()
            .is_none(),
        "the oldest was evicted"
    );
    assert!(
        store
            .known_device(u.id, &hash("d1"))
            .await
            .unwrap()
            .is_some()
    );
    store.forget_devices(u.id).await.unwrap();
    assert!(
        store
            .known_device(u.id, &hash("d1"))
            .await
            .unwrap()
            .is_none()
    );
}

// ---------------------------------------------------------------- maintenance

pub async fn purge_removes_only_what_can_no_longer_matter(store: Arc<dyn Store>) {
    let lock = t0() + Duration::hours(5);
    // "stale": one failure long ago. "locked": locked until well after the cut-off.
    store
        .record_failed_login_unknown(&hash("stale"), t0(), 5, lock, &[])
        .await
        .unwrap();
    for _ in 0..5 {
        store
            .record_failed_login_unknown(&hash("locked"), t0(), 5, lock, &[])
            .await
            .unwrap();
    }
    let u = user(&store, "ana").await;
    store
        .replace_reset_token(
            u.id,
            &hash("old"),
            t0() + Duration::minutes(30),
            t0(),
            t0() - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    let cut = t0() + Duration::hours(2);
    let later = cut + Duration::minutes(1);
    store
        .record_failed_login_unknown(&hash("recent"), later, 5, later + Duration::minutes(5), &[])
        .await
        .unwrap();
    let removed = store
        .purge_expired(cut, cut - Duration::days(365))
        .await
        .unwrap();
    assert_eq!(removed, 1, "the stale counter");
    assert_eq!(
        maintenance::run(
            &store,
            porteiro_core::domain::maintenance::Job::Tokens,
            cut,
            1_000
        )
        .await,
        1,
        "the expired reset token (a maintenance job)"
    );
    assert!(
        store
            .unknown_login_state(&hash("stale"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .unknown_login_state(&hash("locked"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .unknown_login_state(&hash("recent"))
            .await
            .unwrap()
            .is_some()
    );
}

// ---------------------------------------------------------------- audit

pub async fn audit_events_are_listed_newest_first_with_filters(store: Arc<dyn Store>) {
    use porteiro_core::domain::{AuditFilter, NewAuditEvent, Outcome};
    let (ana, bob) = (Uuid::new_v4(), Uuid::new_v4());
    for i in 0..5 {
        let (user, kind) = if i % 2 == 0 {
            (Some(ana), "sign_in.failed")
        } else {
            (Some(bob), "sign_in.succeeded")
        };
        store
            .append_audit(&NewAuditEvent {
                occurred_at: t0() + Duration::seconds(i),
                event_type: kind,
                outcome: if i % 2 == 0 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                },
                user_id: user,
                actor_id: (i == 4).then_some(bob),
                ip_address: Some("203.0.113.5".to_owned()),
                user_agent: Some("tests/1.0".to_owned()),
                details: serde_json::json!({"n": i}),
            })
            .await
            .unwrap();
    }
    let all = store.list_audit(&AuditFilter::default(), 10).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let newest = &all[0];
    assert_eq!(newest.details["n"], 4);
    assert_eq!((newest.user_id, newest.actor_id), (Some(ana), Some(bob)));
    assert_eq!(newest.occurred_at, t0() + Duration::seconds(4));
    assert_eq!(newest.outcome, "failure");
    assert_eq!(newest.ip_address.as_deref(), Some("203.0.113.5"));
    assert_eq!(newest.user_agent.as_deref(), Some("tests/1.0"));

    let of_ana = AuditFilter {
        user_id: Some(ana),
        ..AuditFilter::default()
    };
    let page1 = store.list_audit(&of_ana, 2).await.unwrap();
    assert_eq!(
        page1
            .iter()
            .map(|e| e.details["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [4, 2]
    );
    let page2 = store
        .list_audit(
            &AuditFilter {
                before_id: Some(page1[1].id),
                ..of_ana.clone()
            },
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        page2
            .iter()
            .map(|e| e.details["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [0]
    );

    let by_type = AuditFilter {
        event_type: Some("sign_in.succeeded".to_owned()),
        ..AuditFilter::default()
    };
    assert_eq!(store.list_audit(&by_type, 10).await.unwrap().len(), 2);
    let window = AuditFilter {
        since: Some(t0() + Duration::seconds(1)),
        until: Some(t0() + Duration::seconds(3)),
        ..AuditFilter::default()
    };
    let in_window = store.list_audit(&window, 10).await.unwrap();
    assert_eq!(
        in_window
            .iter()
            .map(|e| e.details["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2, 1]
    );
}

// ---------------------------------------------------------------- recovery

pub async fn reset_tokens_are_limited_per_window(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let window = Duration::minutes(15);
    let issue = |name: String, now: DateTime<Utc>| {
        let store = store.clone();
        async move {
            store
                .replace_reset_token(
                    u.id,
                    &hash(&name),
                    now + Duration::minutes(30),
                    now,
                    now - window,
                    3,
                    &[],
                )
                .await
                .unwrap()
        }
    };
    // Ten concurrent requests: exactly three tokens are issued.
    let outcomes = futures::future::join_all((0..10).map(|i| issue(format!("t{i}"), t0()))).await;
    assert_eq!(outcomes.iter().filter(|issued| **issued).count(), 3);
    let live: Vec<_> = futures::future::join_all((0..10).map(|i| {
        let store = store.clone();
        async move {
            store
                .reset_token_owner(&hash(&format!("t{i}")), t0())
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(
        live.iter().flatten().count(),
        1,
        "only the newest issued token is live"
    );
    // A refused request changed nothing; once the window has passed, tokens are issued again.
    let later = t0() + window + Duration::seconds(1);
    assert!(issue("after".to_owned(), later).await);
    assert_eq!(
        store
            .reset_token_owner(&hash("after"), later)
            .await
            .unwrap(),
        Some(u.id)
    );
}

pub async fn a_new_reset_token_replaces_older_ones(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let exp = t0() + Duration::minutes(30);
    store
        .replace_reset_token(
            u.id,
            &hash("old"),
            exp,
            t0(),
            t0() - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    store
        .replace_reset_token(
            u.id,
            &hash("new"),
            exp,
            t0(),
            t0() - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    assert!(
        store
            .reset_token_owner(&hash("old"), t0())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.reset_token_owner(&hash("new"), t0()).await.unwrap(),
        Some(u.id)
    );
}

pub async fn reset_token_owner_respects_expiry(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    store
        .replace_reset_token(
            u.id,
            &hash("t"),
            t0() + Duration::minutes(30),
            t0(),
            t0() - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .reset_token_owner(&hash("t"), t0() + Duration::minutes(29))
            .await
            .unwrap(),
        Some(u.id)
    );
    assert!(
        store
            .reset_token_owner(&hash("t"), t0() + Duration::minutes(30))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn complete_reset_is_single_use_and_revokes_every_session(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let s = session(&store, &u, "r").await;
    for _ in 0..5 {
        store
            .record_failed_login(
                u.id,
                t0(),
                5,
                t0() + Duration::minutes(5),
                &crate::ev(),
                &crate::ev(),
            )
            .await
            .unwrap();
    }
    store
        .replace_reset_token(
            u.id,
            &hash("t"),
            t0() + Duration::minutes(30),
            t0(),
            t0() - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .complete_reset(&hash("t"), u.id, "new-hash", t0(), &[])
            .await
            .unwrap(),
        Some(vec![s])
    );
    let after = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(after.password_hash, "new-hash");
    assert!(!after.is_locked(t0()), "a reset unlocks");
    assert_eq!(
        store
            .complete_reset(&hash("t"), u.id, "again", t0(), &[])
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .reset_token_owner(&hash("t"), t0())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn complete_reset_needs_the_owner(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let other = user(&store, "bia").await;
    store
        .replace_reset_token(
            u.id,
            &hash("t"),
            t0() + Duration::minutes(30),
            t0(),
            t0() - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .complete_reset(&hash("t"), other.id, "x", t0(), &[])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.reset_token_owner(&hash("t"), t0()).await.unwrap(),
        Some(u.id),
        "not spent"
    );
}

// ---------------------------------------------------------------- keys and outbox

pub async fn signing_keys_are_listed_newest_first(store: Arc<dyn Store>) {
    assert!(store.signing_keys().await.unwrap().is_empty());
    for (i, kid) in ["k1", "k2"].iter().enumerate() {
        store
            .insert_signing_key(
                &StoredKey {
                    kid: (*kid).to_owned(),
                    algorithm: "EdDSA".to_owned(),
                    public_key: vec![1, 2, 3],
                    private_key_enc: vec![4, 5, 6, i as u8],
                    created_at: t0() + Duration::seconds(i as i64),
                    retired_at: None,
                },
                &[],
            )
            .await
            .unwrap();
    }
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        ["k2", "k1"]
    );
    assert_eq!(keys[0].private_key_enc, vec![4, 5, 6, 1]);
}

pub async fn outbox_claims_due_mail_once_per_lease(store: Arc<dyn Store>) {
    let id = Uuid::new_v4();
    store.enqueue_mail(id, b"sealed", t0()).await.unwrap();
    assert_eq!(store.pending_mail_count().await.unwrap(), 1);
    let lease = t0() + Duration::minutes(2);
    let claimed = store.claim_mail(t0(), lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (
            claimed[0].id,
            claimed[0].payload.as_slice(),
            claimed[0].attempts
        ),
        (id, &b"sealed"[..], 1)
    );
    assert!(
        store
            .claim_mail(t0() + Duration::minutes(1), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let again = store
        .claim_mail(lease, lease + Duration::minutes(2), 10)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 2, "an expired lease is claimable again");
}

pub async fn outbox_sent_mail_is_erased(store: Arc<dyn Store>) {
    let id = Uuid::new_v4();
    store.enqueue_mail(id, b"sealed", t0()).await.unwrap();
    store
        .claim_mail(t0(), t0() + Duration::minutes(2), 10)
        .await
        .unwrap();
    store.mail_sent(id, t0()).await.unwrap();
    assert_eq!(store.pending_mail_count().await.unwrap(), 0);
    assert!(
        store
            .claim_mail(t0() + Duration::hours(1), t0() + Duration::hours(2), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn outbox_failed_mail_is_retried_or_abandoned(store: Arc<dyn Store>) {
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    store.enqueue_mail(a, b"a", t0()).await.unwrap();
    store.enqueue_mail(b, b"b", t0()).await.unwrap();
    store
        .claim_mail(t0(), t0() + Duration::minutes(2), 10)
        .await
        .unwrap();
    let retry = t0() + Duration::seconds(30);
    store
        .mail_failed(a, "connection refused", Some(retry), t0())
        .await
        .unwrap();
    store
        .mail_failed(b, "mailbox unavailable", None, t0())
        .await
        .unwrap();
    assert_eq!(store.pending_mail_count().await.unwrap(), 1);
    assert!(
        store
            .claim_mail(t0() + Duration::seconds(10), retry, 10)
            .await
            .unwrap()
            .is_empty(),
        "not yet due"
    );
    let due = store
        .claim_mail(retry, retry + Duration::minutes(2), 10)
        .await
        .unwrap();
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), vec![a]);
}

pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(["sqlite", "postgres"].contains(&store.backend()));
}

pub async fn active_administrators_are_the_active_admins_oldest_first(store: Arc<dyn Store>) {
    let admin = |name: &str, minutes: i64| NewUser {
        is_admin: true,
        now: t0() + Duration::minutes(minutes),
        ..new_user(name)
    };
    let first = store.insert_user(&admin("first", 0), &[]).await.unwrap();
    let second = store.insert_user(&admin("second", 1), &[]).await.unwrap();
    let gone = store.insert_user(&admin("gone", 2), &[]).await.unwrap();
    user(&store, "plain").await;
    store
        .update_profile(
            gone.id,
            &ProfileUpdate {
                is_active: Some(false),
                ..ProfileUpdate::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap();
    let ids = |users: Vec<User>| users.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.active_administrators(10).await.unwrap()),
        vec![first.id, second.id]
    );
    assert_eq!(
        ids(store.active_administrators(1).await.unwrap()),
        vec![first.id]
    );
}
