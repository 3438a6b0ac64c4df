//! The contract of multi-factor sign-in: a TOTP credential is pending until a first code proves
//! it, a TOTP step and a backup code are accepted once, a second step is spent together with its
//! factor by exactly one of concurrent attempts, a refusal changes nothing, and the account lock
//! holds for every client but a known device.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use porteiro_core::domain::User;
use porteiro_core::domain::mfa::{
    CompleteOutcome, EmailCodeOutcome, Method, MfaChallenge, NewMfaChallenge, SpentFactor,
};
use porteiro_core::store::Store;
use uuid::Uuid;

use crate::events::{numbered, written};
use crate::{hash, new_session, rotate, t0, user};

/// Wrong codes a challenge survives.
pub(crate) const MAX_ATTEMPTS: i32 = 5;
/// The TOTP step the setup is enabled with.
const FIRST_STEP: i64 = 1_000;

fn secret(n: u8) -> Vec<u8> {
    vec![n; 44]
}

/// Ten backup-code hashes named `{set}0` … `{set}9`.
fn codes(set: &str) -> Vec<String> {
    (0..10).map(|i| code(&format!("{set}{i}"))).collect()
}

fn code(name: &str) -> String {
    hash(&format!("code-{name}"))
}

fn totp(step: i64) -> SpentFactor {
    SpentFactor::TotpStep(step)
}

pub(crate) fn backup(name: &str) -> SpentFactor {
    SpentFactor::BackupCode(code(name))
}

/// An account with TOTP enabled at [`FIRST_STEP`] and backup codes `b0` … `b9`.
pub(crate) async fn enrolled(store: &Arc<dyn Store>, name: &str) -> User {
    let u = user(store, name).await;
    assert!(
        store
            .begin_totp_setup(u.id, &secret(1), &codes("b"), t0())
            .await
            .unwrap()
    );
    assert!(
        store
            .enable_totp(u.id, &secret(1), FIRST_STEP, t0(), &[])
            .await
            .unwrap()
    );
    u
}

/// A second step for `u` opened at `now` with token `token`, alive five minutes.
pub(crate) fn challenge(u: &User, token: &str, now: DateTime<Utc>) -> NewMfaChallenge {
    NewMfaChallenge {
        id: Uuid::new_v4(),
        token_hash: hash(token),
        user_id: u.id,
        credential_epoch: u.credential_epoch,
        client_hash: hash("client"),
        device_hash: Some(hash("device")),
        known_device: false,
        methods: vec![Method::Totp, Method::BackupCode],
        amr: vec!["pwd".to_owned()],
        email_code: None,
        now,
        expires_at: now + Duration::minutes(5),
    }
}

/// Stores `c` and returns its id.
pub(crate) async fn open(store: &Arc<dyn Store>, c: &NewMfaChallenge) -> Uuid {
    store.insert_mfa_challenge(c, &[]).await.unwrap();
    c.id
}

pub(crate) async fn complete(
    store: &Arc<dyn Store>,
    id: Uuid,
    factor: &SpentFactor,
    at: DateTime<Utc>,
) -> CompleteOutcome {
    store
        .complete_mfa_challenge(id, factor, MAX_ATTEMPTS, at, &[])
        .await
        .unwrap()
}

pub(crate) async fn live(
    store: &Arc<dyn Store>,
    token: &str,
    at: DateTime<Utc>,
) -> Option<MfaChallenge> {
    store
        .mfa_challenge(&hash(token), MAX_ATTEMPTS, at)
        .await
        .unwrap()
}

async fn spend(store: &Arc<dyn Store>, u: &User, factor: &SpentFactor) -> bool {
    store.spend_factor(u.id, factor, t0(), &[]).await.unwrap()
}

async fn remaining_codes(store: &Arc<dyn Store>, u: &User) -> u32 {
    store
        .totp_credential(u.id)
        .await
        .unwrap()
        .expect("credential")
        .backup_codes_remaining
}

/// Records `n` failed sign-ins of `u` at `t0`; the fifth locks it until `t0 + 15 min`.
async fn failed_sign_ins(store: &Arc<dyn Store>, u: &User, n: usize) {
    for _ in 0..n {
        store
            .record_failed_login(
                u.id,
                t0(),
                5,
                t0() + Duration::minutes(15),
                &crate::ev(),
                &crate::ev(),
            )
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------- credentials

pub async fn totp_setup_stays_pending_until_its_own_secret_enables_it(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    assert!(store.totp_credential(ana.id).await.unwrap().is_none());
    assert!(
        store
            .begin_totp_setup(ana.id, &secret(1), &codes("a"), t0())
            .await
            .unwrap()
    );
    let pending = store.totp_credential(ana.id).await.unwrap().unwrap();
    assert_eq!(pending.user_id, ana.id);
    assert_eq!(pending.secret_enc, secret(1));
    assert_eq!((pending.enabled_at, pending.last_step), (None, None));
    assert_eq!(pending.backup_codes_remaining, 10);
    assert_eq!(pending.created_at, t0());
    // A restarted setup replaces the secret and the codes; the first secret no longer enables.
    let later = t0() + Duration::minutes(1);
    assert!(
        store
            .begin_totp_setup(ana.id, &secret(2), &codes("b")[..8], later)
            .await
            .unwrap()
    );
    let restarted = store.totp_credential(ana.id).await.unwrap().unwrap();
    assert_eq!(
        (restarted.secret_enc, restarted.backup_codes_remaining),
        (secret(2), 8)
    );
    assert_eq!(restarted.created_at, later);
    assert!(
        !store
            .enable_totp(ana.id, &secret(1), FIRST_STEP, later, &[])
            .await
            .unwrap()
    );
    // Codes do not work while the setup is pending.
    assert!(!spend(&store, &ana, &backup("b0")).await);
    assert!(!spend(&store, &ana, &totp(FIRST_STEP + 1)).await);
    assert!(
        store
            .enable_totp(ana.id, &secret(2), FIRST_STEP, later, &[])
            .await
            .unwrap()
    );
    let enabled = store.totp_credential(ana.id).await.unwrap().unwrap();
    assert_eq!(enabled.enabled_at, Some(later));
    assert_eq!(enabled.last_step, Some(FIRST_STEP));
    // Enabled: neither a second enable nor a new setup changes it.
    assert!(
        !store
            .enable_totp(ana.id, &secret(2), FIRST_STEP + 5, later, &[])
            .await
            .unwrap()
    );
    assert!(
        !store
            .begin_totp_setup(ana.id, &secret(3), &codes("c"), later)
            .await
            .unwrap()
    );
    assert_eq!(
        store.totp_credential(ana.id).await.unwrap().unwrap(),
        enabled
    );
    assert!(spend(&store, &ana, &backup("b0")).await);
    assert!(!spend(&store, &ana, &backup("c0")).await);
    // An unknown account is a refusal, not an error.
    let ghost = Uuid::now_v7();
    assert!(
        !store
            .begin_totp_setup(ghost, &secret(1), &codes("a"), t0())
            .await
            .unwrap()
    );
    assert!(
        !store
            .enable_totp(ghost, &secret(1), FIRST_STEP, t0(), &[])
            .await
            .unwrap()
    );
    assert!(store.totp_credential(ghost).await.unwrap().is_none());
}

pub async fn totp_steps_are_accepted_once_and_only_forward(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await;
    assert!(
        !spend(&store, &ana, &totp(FIRST_STEP)).await,
        "the step that enabled the app is used"
    );
    assert!(spend(&store, &ana, &totp(FIRST_STEP + 1)).await);
    assert!(
        !spend(&store, &ana, &totp(FIRST_STEP + 1)).await,
        "same step twice"
    );
    assert!(spend(&store, &ana, &totp(FIRST_STEP + 3)).await);
    assert!(
        !spend(&store, &ana, &totp(FIRST_STEP + 2)).await,
        "an earlier step after a later one"
    );
    assert_eq!(
        store
            .totp_credential(ana.id)
            .await
            .unwrap()
            .unwrap()
            .last_step,
        Some(FIRST_STEP + 3)
    );
    // Another account's steps are its own.
    let bea = enrolled(&store, "bea").await;
    assert!(spend(&store, &bea, &totp(FIRST_STEP + 3)).await);
    // An emailed code never re-authenticates; an account without TOTP spends nothing.
    assert!(!spend(&store, &ana, &SpentFactor::EmailCode(hash("e"))).await);
    let cai = user(&store, "cai").await;
    assert!(!spend(&store, &cai, &totp(FIRST_STEP + 9)).await);
}

pub async fn backup_codes_are_single_use_and_die_with_their_set(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await;
    assert!(spend(&store, &ana, &backup("b0")).await);
    assert!(!spend(&store, &ana, &backup("b0")).await, "a code twice");
    assert!(!spend(&store, &ana, &backup("x0")).await, "not a code");
    assert_eq!(remaining_codes(&store, &ana).await, 9);
    // Each account's codes are its own: the same code of another account is still unused.
    let bea = enrolled(&store, "bea").await;
    assert!(spend(&store, &bea, &backup("b0")).await);
    assert_eq!(remaining_codes(&store, &ana).await, 9);
    // A new set replaces the old one entirely.
    assert!(
        store
            .replace_backup_codes(ana.id, &codes("n"), t0(), &[])
            .await
            .unwrap()
    );
    assert_eq!(remaining_codes(&store, &ana).await, 10);
    assert!(
        !spend(&store, &ana, &backup("b1")).await,
        "a code of the old set"
    );
    assert!(spend(&store, &ana, &backup("n1")).await);
    assert_eq!(remaining_codes(&store, &ana).await, 9);
    // Without TOTP enabled there is no set to replace.
    let cai = user(&store, "cai").await;
    assert!(
        !store
            .replace_backup_codes(cai.id, &codes("n"), t0(), &[])
            .await
            .unwrap()
    );
    assert!(store.totp_credential(cai.id).await.unwrap().is_none());
    assert!(!spend(&store, &cai, &backup("n1")).await);
    assert!(
        store
            .begin_totp_setup(cai.id, &secret(1), &codes("p"), t0())
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_backup_codes(cai.id, &codes("q"), t0(), &[])
            .await
            .unwrap(),
        "a pending setup's codes are replaced by restarting it"
    );
    assert_eq!(remaining_codes(&store, &cai).await, 10);
}

pub async fn disabling_totp_removes_the_credential_and_its_codes(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await;
    assert!(store.disable_totp(ana.id, t0(), &[]).await.unwrap());
    assert!(store.totp_credential(ana.id).await.unwrap().is_none());
    assert!(!spend(&store, &ana, &backup("b2")).await);
    assert!(!spend(&store, &ana, &totp(FIRST_STEP + 1)).await);
    assert!(
        !store.disable_totp(ana.id, t0(), &[]).await.unwrap(),
        "nothing left to disable"
    );
    // A pending setup is deleted too, but it was not an enabled credential.
    let bea = user(&store, "bea").await;
    store
        .begin_totp_setup(bea.id, &secret(1), &codes("b"), t0())
        .await
        .unwrap();
    assert!(!store.disable_totp(bea.id, t0(), &[]).await.unwrap());
    assert!(store.totp_credential(bea.id).await.unwrap().is_none());
    // Enabling again starts from a clean slate: the step history is gone with the credential.
    assert!(
        store
            .begin_totp_setup(ana.id, &secret(2), &codes("c"), t0())
            .await
            .unwrap()
    );
    assert!(
        store
            .enable_totp(ana.id, &secret(2), FIRST_STEP - 10, t0(), &[])
            .await
            .unwrap()
    );
    assert!(!spend(&store, &ana, &backup("b3")).await);
    assert!(spend(&store, &ana, &backup("c3")).await);
}

pub async fn concurrent_spends_of_one_code_have_one_winner(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await.id;
    for factor in [totp(FIRST_STEP + 1), backup("b4")] {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, factor) = (store.clone(), factor.clone());
                tokio::spawn(
                    async move { store.spend_factor(ana, &factor, t0(), &[]).await.unwrap() },
                )
            })
            .collect();
        let spent = futures::future::join_all(tasks).await;
        let winners = spent.iter().filter(|s| *s.as_ref().unwrap()).count();
        assert_eq!(winners, 1, "{factor:?}: {spent:?}");
    }
}

// ---------------------------------------------------------------- challenges

pub async fn challenges_are_found_only_while_live(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let mut new = challenge(&ana, "m1", t0());
    new.known_device = true;
    new.methods = vec![Method::Email, Method::Totp];
    new.amr = vec!["pwd".to_owned(), "hwk".to_owned()];
    new.email_code = Some((hash("e1"), t0() + Duration::minutes(2)));
    open(&store, &new).await;
    let expected = MfaChallenge {
        id: new.id,
        user_id: ana.id,
        credential_epoch: ana.credential_epoch,
        client_hash: hash("client"),
        device_hash: Some(hash("device")),
        known_device: true,
        methods: vec![Method::Email, Method::Totp],
        amr: vec!["pwd".to_owned(), "hwk".to_owned()],
        failed_attempts: 0,
        email_code_hash: Some(hash("e1")),
        email_code_expires_at: Some(t0() + Duration::minutes(2)),
        email_codes_sent: 1,
        email_last_sent_at: Some(t0()),
        expires_at: t0() + Duration::minutes(5),
        created_at: t0(),
    };
    assert_eq!(live(&store, "m1", t0()).await, Some(expected));
    assert!(live(&store, "m2", t0()).await.is_none(), "unknown token");
    assert!(
        live(&store, "m1", t0() + Duration::minutes(5))
            .await
            .is_none(),
        "expired"
    );
    // Without a mailed code nothing was sent.
    let mut plain = challenge(&ana, "m3", t0());
    plain.device_hash = None;
    open(&store, &plain).await;
    let found = live(&store, "m3", t0()).await.unwrap();
    assert_eq!(found.device_hash, None);
    assert!(!found.known_device);
    assert_eq!(
        (
            found.email_code_hash,
            found.email_codes_sent,
            found.email_last_sent_at
        ),
        (None, 0, None)
    );
    // An account that no longer exists gets no challenge, and no error.
    let mut ghost = ana.clone();
    ghost.id = Uuid::now_v7();
    store
        .insert_mfa_challenge(&challenge(&ghost, "m4", t0()), &[numbered(1)])
        .await
        .unwrap();
    assert!(live(&store, "m4", t0()).await.is_none());
    assert_eq!(written(&store).await, Vec::<i64>::new());
}

pub async fn wrong_codes_count_up_to_the_limit_then_the_challenge_is_dead(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await;
    let id = open(&store, &challenge(&ana, "m1", t0())).await;
    for n in 1..=MAX_ATTEMPTS {
        assert_eq!(
            store
                .fail_mfa_challenge(id, MAX_ATTEMPTS, t0())
                .await
                .unwrap(),
            Some(n)
        );
        if n < MAX_ATTEMPTS {
            assert_eq!(live(&store, "m1", t0()).await.unwrap().failed_attempts, n);
        }
    }
    assert_eq!(
        store
            .fail_mfa_challenge(id, MAX_ATTEMPTS, t0())
            .await
            .unwrap(),
        None
    );
    assert!(live(&store, "m1", t0()).await.is_none());
    assert_eq!(
        complete(&store, id, &totp(FIRST_STEP + 1), t0()).await,
        CompleteOutcome::ChallengeGone
    );
    assert!(
        spend(&store, &ana, &totp(FIRST_STEP + 1)).await,
        "a dead challenge spent no code"
    );
    // Expired, unknown and spent challenges count nothing either.
    let late = open(&store, &challenge(&ana, "m2", t0())).await;
    assert_eq!(
        store
            .fail_mfa_challenge(late, MAX_ATTEMPTS, t0() + Duration::minutes(5))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .fail_mfa_challenge(Uuid::new_v4(), MAX_ATTEMPTS, t0())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        complete(&store, late, &totp(FIRST_STEP + 2), t0()).await,
        CompleteOutcome::Completed
    );
    assert_eq!(
        store
            .fail_mfa_challenge(late, MAX_ATTEMPTS, t0())
            .await
            .unwrap(),
        None
    );
}

pub async fn completing_spends_the_challenge_and_the_factor_and_clears_failures(
    store: Arc<dyn Store>,
) {
    let ana = enrolled(&store, "ana").await;
    failed_sign_ins(&store, &ana, 3).await;
    let id = open(&store, &challenge(&ana, "m1", t0())).await;
    let at = t0() + Duration::minutes(1);
    assert_eq!(
        complete(&store, id, &totp(FIRST_STEP + 2), at).await,
        CompleteOutcome::Completed
    );
    assert_eq!(
        store
            .user_by_id(ana.id)
            .await
            .unwrap()
            .unwrap()
            .failed_login_attempts,
        0
    );
    assert!(live(&store, "m1", at).await.is_none());
    assert_eq!(
        complete(&store, id, &totp(FIRST_STEP + 3), at).await,
        CompleteOutcome::ChallengeGone,
        "a challenge ends once"
    );
    assert!(
        !spend(&store, &ana, &totp(FIRST_STEP + 2)).await,
        "the step is spent"
    );
    assert!(
        !spend(&store, &ana, &totp(FIRST_STEP + 1)).await,
        "and so is every earlier one"
    );
    // A backup code completes a second challenge, once.
    let second = open(&store, &challenge(&ana, "m2", at)).await;
    assert_eq!(
        complete(&store, second, &backup("b5"), at).await,
        CompleteOutcome::Completed
    );
    assert_eq!(remaining_codes(&store, &ana).await, 9);
    let third = open(&store, &challenge(&ana, "m3", at)).await;
    assert_eq!(
        complete(&store, third, &backup("b5"), at).await,
        CompleteOutcome::FactorRejected
    );
}

pub async fn a_refused_completion_changes_nothing(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await;
    failed_sign_ins(&store, &ana, 1).await;
    let mut with_mail = challenge(&ana, "m1", t0());
    with_mail.email_code = Some((hash("e1"), t0() + Duration::minutes(2)));
    let id = open(&store, &with_mail).await;
    let before = live(&store, "m1", t0()).await.unwrap();
    let at = t0() + Duration::minutes(3);
    for factor in [
        totp(FIRST_STEP),
        totp(FIRST_STEP - 1),
        backup("zz"),
        SpentFactor::EmailCode(hash("e2")),
        // The right code, expired at `at`.
        SpentFactor::EmailCode(hash("e1")),
    ] {
        assert_eq!(
            store
                .complete_mfa_challenge(id, &factor, MAX_ATTEMPTS, at, &[numbered(1)])
                .await
                .unwrap(),
            CompleteOutcome::FactorRejected,
            "{factor:?}"
        );
    }
    for (gone, at) in [(Uuid::new_v4(), at), (id, t0() + Duration::minutes(5))] {
        assert_eq!(
            store
                .complete_mfa_challenge(
                    gone,
                    &totp(FIRST_STEP + 1),
                    MAX_ATTEMPTS,
                    at,
                    &[numbered(2)]
                )
                .await
                .unwrap(),
            CompleteOutcome::ChallengeGone
        );
    }
    // The challenge is as it was, the failure count too, and the factors are unspent.
    assert_eq!(live(&store, "m1", at).await, Some(before));
    assert_eq!(
        store
            .user_by_id(ana.id)
            .await
            .unwrap()
            .unwrap()
            .failed_login_attempts,
        1
    );
    assert_eq!(written(&store).await, Vec::<i64>::new());
    assert_eq!(
        complete(&store, id, &totp(FIRST_STEP + 1), at).await,
        CompleteOutcome::Completed,
        "the step the gone calls offered is unspent"
    );
    // An account without TOTP has no app code or backup code to spend.
    let bea = user(&store, "bea").await;
    let other = open(&store, &challenge(&bea, "m2", t0())).await;
    for factor in [totp(FIRST_STEP + 1), backup("b0")] {
        assert_eq!(
            complete(&store, other, &factor, t0()).await,
            CompleteOutcome::FactorRejected
        );
    }
}

pub async fn emailed_codes_complete_while_current_and_unexpired(store: Arc<dyn Store>) {
    // The emailed code needs no TOTP on the account.
    let ana = user(&store, "ana").await;
    let mut new = challenge(&ana, "m1", t0());
    new.methods = vec![Method::Email];
    new.email_code = Some((hash("e1"), t0() + Duration::minutes(2)));
    let id = open(&store, &new).await;
    assert_eq!(
        store
            .set_mfa_email_code(
                id,
                &hash("e2"),
                t0() + Duration::minutes(4),
                t0() + Duration::minutes(1),
                3,
                MAX_ATTEMPTS,
                t0() + Duration::minutes(1),
            )
            .await
            .unwrap(),
        EmailCodeOutcome::Stored
    );
    let at = t0() + Duration::minutes(1);
    assert_eq!(
        complete(&store, id, &SpentFactor::EmailCode(hash("e1")), at).await,
        CompleteOutcome::FactorRejected,
        "a replaced code"
    );
    assert_eq!(
        complete(&store, id, &SpentFactor::EmailCode(hash("e2")), at).await,
        CompleteOutcome::Completed
    );
    // A challenge that never mailed a code accepts none.
    let plain = open(&store, &challenge(&ana, "m2", t0())).await;
    assert_eq!(
        complete(&store, plain, &SpentFactor::EmailCode(hash("e2")), at).await,
        CompleteOutcome::FactorRejected
    );
}

/// Asks to mail code `e{n}` for challenge `id` at `at`: at most three codes, 30 seconds apart.
async fn mail_code(
    store: &Arc<dyn Store>,
    id: Uuid,
    n: i64,
    at: DateTime<Utc>,
) -> EmailCodeOutcome {
    store
        .set_mfa_email_code(
            id,
            &hash(&format!("e{n}")),
            at + Duration::minutes(2),
            at - Duration::seconds(30),
            3,
            MAX_ATTEMPTS,
            at,
        )
        .await
        .unwrap()
}

pub async fn mailing_codes_is_limited_in_count_and_interval(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let mut new = challenge(&ana, "m1", t0());
    new.email_code = Some((hash("e0"), t0() + Duration::minutes(2)));
    let id = open(&store, &new).await;
    store
        .fail_mfa_challenge(id, MAX_ATTEMPTS, t0())
        .await
        .unwrap();
    // The code mailed with the challenge counts: the interval runs from it.
    assert_eq!(
        mail_code(&store, id, 1, t0() + Duration::seconds(10)).await,
        EmailCodeOutcome::TooSoon
    );
    let second = t0() + Duration::seconds(30);
    assert_eq!(
        mail_code(&store, id, 2, second).await,
        EmailCodeOutcome::Stored
    );
    let stored = live(&store, "m1", second).await.unwrap();
    assert_eq!(stored.email_code_hash, Some(hash("e2")));
    assert_eq!(
        stored.email_code_expires_at,
        Some(second + Duration::minutes(2))
    );
    assert_eq!(
        (stored.email_codes_sent, stored.email_last_sent_at),
        (2, Some(second))
    );
    assert_eq!(stored.failed_attempts, 1, "a new code keeps the failures");
    assert_eq!(
        mail_code(&store, id, 3, second + Duration::seconds(29)).await,
        EmailCodeOutcome::TooSoon
    );
    let third = second + Duration::seconds(31);
    assert_eq!(
        mail_code(&store, id, 4, third).await,
        EmailCodeOutcome::Stored
    );
    // The limit is final, and named before the interval.
    assert_eq!(
        mail_code(&store, id, 5, third + Duration::seconds(1)).await,
        EmailCodeOutcome::LimitReached
    );
    assert_eq!(
        mail_code(&store, id, 6, third + Duration::minutes(1)).await,
        EmailCodeOutcome::LimitReached
    );
    assert_eq!(
        live(&store, "m1", third).await.unwrap().email_code_hash,
        Some(hash("e4"))
    );
    // A challenge that is not live gets no code.
    assert_eq!(
        mail_code(&store, id, 7, t0() + Duration::minutes(5)).await,
        EmailCodeOutcome::ChallengeGone
    );
    assert_eq!(
        mail_code(&store, Uuid::new_v4(), 8, t0()).await,
        EmailCodeOutcome::ChallengeGone
    );
    let dead = open(&store, &challenge(&ana, "m2", t0())).await;
    for _ in 0..MAX_ATTEMPTS {
        store
            .fail_mfa_challenge(dead, MAX_ATTEMPTS, t0())
            .await
            .unwrap();
    }
    assert_eq!(
        mail_code(&store, dead, 9, t0()).await,
        EmailCodeOutcome::ChallengeGone
    );
}

pub async fn concurrent_requests_mail_one_code(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let id = open(&store, &challenge(&ana, "m1", t0())).await;
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { mail_code(&store, id, n, t0()).await })
        })
        .collect();
    let outcomes: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let stored = outcomes
        .iter()
        .filter(|o| **o == EmailCodeOutcome::Stored)
        .count();
    assert_eq!(stored, 1, "{outcomes:?}");
    assert_eq!(live(&store, "m1", t0()).await.unwrap().email_codes_sent, 1);
}

pub async fn a_locked_account_completes_only_from_a_known_device(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await;
    failed_sign_ins(&store, &ana, 5).await;
    let locked = store.user_by_id(ana.id).await.unwrap().unwrap();
    let at = t0() + Duration::minutes(1);
    let id = open(&store, &challenge(&ana, "m1", t0())).await;
    for factor in [totp(FIRST_STEP + 1), backup("b0")] {
        assert_eq!(
            complete(&store, id, &factor, at).await,
            CompleteOutcome::AccountLocked
        );
    }
    assert!(live(&store, "m1", at).await.is_some());
    assert_eq!(remaining_codes(&store, &ana).await, 10, "nothing was spent");
    // A known device's challenge ignores the account lock, and leaves it in place.
    let mut known = challenge(&ana, "m2", t0());
    known.known_device = true;
    let known = open(&store, &known).await;
    assert_eq!(
        complete(&store, known, &totp(FIRST_STEP + 1), at).await,
        CompleteOutcome::Completed,
        "the step the locked attempt offered was not spent"
    );
    assert_eq!(store.user_by_id(ana.id).await.unwrap().unwrap(), locked);
    // Once the lock has run out, any client completes and the count starts over.
    let after = t0() + Duration::minutes(16);
    let late = open(&store, &challenge(&ana, "m3", after)).await;
    assert_eq!(
        complete(&store, late, &backup("b0"), after).await,
        CompleteOutcome::Completed
    );
    let unlocked = store.user_by_id(ana.id).await.unwrap().unwrap();
    assert_eq!(unlocked.failed_login_attempts, 0);
    assert!(!unlocked.is_locked(after));
}

/// Runs every `(challenge, factor)` completion at once and returns their outcomes.
async fn race(store: &Arc<dyn Store>, attempts: Vec<(Uuid, SpentFactor)>) -> Vec<CompleteOutcome> {
    let tasks: Vec<_> = attempts
        .into_iter()
        .map(|(id, factor)| {
            let store = store.clone();
            tokio::spawn(async move { complete(&store, id, &factor, t0()).await })
        })
        .collect();
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Exactly one of `outcomes` is `Completed`, and every other one is `lost`.
fn assert_one_winner(outcomes: &[CompleteOutcome], lost: CompleteOutcome) {
    let winners = outcomes
        .iter()
        .filter(|o| **o == CompleteOutcome::Completed)
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| **o == lost).count(),
        outcomes.len() - 1,
        "{outcomes:?}"
    );
}

pub async fn concurrent_completions_of_one_challenge_have_one_winner(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await;
    let id = open(&store, &challenge(&ana, "m1", t0())).await;
    // Each with its own valid code: only the challenge is shared.
    let attempts = (1..=8)
        .map(|i| {
            let factor = if i % 2 == 0 {
                totp(FIRST_STEP + i)
            } else {
                backup(&format!("b{i}"))
            };
            (id, factor)
        })
        .collect();
    assert_one_winner(
        &race(&store, attempts).await,
        CompleteOutcome::ChallengeGone,
    );
    // The losers' codes were not spent: of the four backup codes offered, one at most is gone.
    assert!(remaining_codes(&store, &ana).await >= 9);
}

pub async fn one_code_completes_only_one_of_several_challenges(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await;
    for (round, factor) in [totp(FIRST_STEP + 1), backup("b7")].into_iter().enumerate() {
        let tokens: Vec<String> = (0..8).map(|i| format!("r{round}m{i}")).collect();
        let mut attempts = Vec::new();
        for token in &tokens {
            let id = open(&store, &challenge(&ana, token, t0())).await;
            attempts.push((id, factor.clone()));
        }
        assert_one_winner(
            &race(&store, attempts).await,
            CompleteOutcome::FactorRejected,
        );
        // The losers' challenges are still live.
        let mut still_live = 0;
        for token in &tokens {
            still_live += usize::from(live(&store, token, t0()).await.is_some());
        }
        assert_eq!(still_live, 7, "{factor:?}");
    }
}

// ---------------------------------------------------------------- events

pub async fn mfa_events_are_written_only_with_their_change(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    store
        .begin_totp_setup(ana.id, &secret(1), &codes("b"), t0())
        .await
        .unwrap();
    assert!(
        !store
            .enable_totp(ana.id, &secret(9), FIRST_STEP, t0(), &[numbered(1)])
            .await
            .unwrap()
    );
    assert!(
        store
            .enable_totp(ana.id, &secret(1), FIRST_STEP, t0(), &[numbered(2)])
            .await
            .unwrap()
    );
    assert!(
        !store
            .spend_factor(ana.id, &totp(FIRST_STEP), t0(), &[numbered(3)])
            .await
            .unwrap()
    );
    assert!(
        store
            .spend_factor(ana.id, &totp(FIRST_STEP + 1), t0(), &[numbered(4)])
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_backup_codes(ana.id, &codes("n"), t0(), &[numbered(5)])
            .await
            .unwrap()
    );
    let c = challenge(&ana, "m1", t0());
    store
        .insert_mfa_challenge(&c, &[numbered(6)])
        .await
        .unwrap();
    assert_eq!(
        store
            .complete_mfa_challenge(c.id, &backup("b0"), MAX_ATTEMPTS, t0(), &[numbered(7)])
            .await
            .unwrap(),
        CompleteOutcome::FactorRejected
    );
    assert_eq!(
        store
            .complete_mfa_challenge(c.id, &backup("n0"), MAX_ATTEMPTS, t0(), &[numbered(8)])
            .await
            .unwrap(),
        CompleteOutcome::Completed
    );
    assert!(
        store
            .disable_totp(ana.id, t0(), &[numbered(9)])
            .await
            .unwrap()
    );
    assert!(
        !store
            .disable_totp(ana.id, t0(), &[numbered(10)])
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_backup_codes(ana.id, &codes("x"), t0(), &[numbered(11)])
            .await
            .unwrap()
    );
    assert_eq!(written(&store).await, vec![2, 4, 5, 6, 8, 9]);
}

// ---------------------------------------------------------------- sessions and maintenance

pub async fn sessions_keep_the_methods_they_were_opened_with(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let (mut s, r) = new_session(&ana, "r1", t0(), ana.credential_epoch);
    s.amr = vec!["pwd".to_owned(), "otp".to_owned()];
    let created = store
        .create_session(&s, &r, &[])
        .await
        .unwrap()
        .expect("created");
    assert_eq!(created.amr, ["pwd", "otp"]);
    assert_eq!(
        store.session_by_id(s.id).await.unwrap().unwrap().amr,
        ["pwd", "otp"]
    );
    assert_eq!(
        store.list_active_sessions(ana.id, t0()).await.unwrap()[0].amr,
        ["pwd", "otp"]
    );
    let porteiro_core::domain::session::RotateOutcome::Rotated(rotation) =
        rotate(&store, "r1", "r2", t0() + Duration::minutes(1)).await
    else {
        panic!("rotated");
    };
    assert_eq!(
        rotation.session.amr,
        ["pwd", "otp"],
        "kept across refreshes"
    );
    assert_eq!(
        store
            .refresh_token_session(&hash("r2"), t0())
            .await
            .unwrap()
            .unwrap()
            .amr,
        ["pwd", "otp"]
    );
    // A password-only session says so.
    let (plain, r) = new_session(&ana, "r3", t0(), ana.credential_epoch);
    store.create_session(&plain, &r, &[]).await.unwrap();
    assert_eq!(
        store.session_by_id(plain.id).await.unwrap().unwrap().amr,
        ["pwd"]
    );
}

pub async fn purge_removes_expired_challenges(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    open(&store, &challenge(&ana, "old", t0())).await;
    let cut = t0() + Duration::hours(2);
    open(&store, &challenge(&ana, "new", cut)).await;
    assert_eq!(
        crate::maintenance::run(
            &store,
            porteiro_core::domain::maintenance::Job::VerificationCodes,
            cut,
            1_000
        )
        .await,
        1
    );
    assert!(live(&store, "old", t0()).await.is_none());
    assert!(live(&store, "new", cut).await.is_some());
}

pub async fn deleting_an_account_removes_its_factors_and_challenges(store: Arc<dyn Store>) {
    let ana = enrolled(&store, "ana").await;
    let id = open(&store, &challenge(&ana, "m1", t0())).await;
    let bea = enrolled(&store, "bea").await;
    open(&store, &challenge(&bea, "m2", t0())).await;
    assert!(store.delete_user(ana.id, &[]).await.unwrap().is_some());
    assert!(store.totp_credential(ana.id).await.unwrap().is_none());
    assert!(live(&store, "m1", t0()).await.is_none());
    assert_eq!(
        complete(&store, id, &backup("b0"), t0()).await,
        CompleteOutcome::ChallengeGone
    );
    assert!(
        !store
            .begin_totp_setup(ana.id, &secret(1), &codes("b"), t0())
            .await
            .unwrap()
    );
    // The other account keeps everything.
    assert_eq!(remaining_codes(&store, &bea).await, 10);
    assert!(live(&store, "m2", t0()).await.is_some());
}
