//! Address-confirmation and change-of-address links ([`EmailConfirmationStore`]), for both
//! backends. Issuing and confirming lock the account first ([`SqlTx::lock_account`]), so
//! concurrent requests for one account count each other's tokens (the per-account limit is exact)
//! and take their locks in one order.
//!
//! [`EmailConfirmationStore`]: porteiro_core::store::EmailConfirmationStore

use chrono::{DateTime, Utc};
use porteiro_core::domain::UserId;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::email_confirmation::NewEmailConfirmation;
use porteiro_core::store::{StoreError, StoreResult};

use crate::{Arg, SqlDb, SqlTx, UNIQUE_VIOLATION, commit_if};

/// Stores a token (`$1` hash, `$2` account, `$3` address, `$4` expiry, `$5` now) if the
/// account is active, still has address `$3`, unconfirmed, and was issued fewer than `$7`
/// tokens after `$6`. Affects one row or none.
const ISSUE: &str = "insert into email_confirmation_tokens \
       (token_hash, user_id, email, expires_at, created_at) \
     select $1, id, email, $4, $5 from users \
     where id = $2 and email = $3 and is_active and not email_verified \
       and (select count(*) from email_confirmation_tokens t \
            where t.user_id = $2 and t.created_at > $6) < $7";

/// Spends every live token of account `$1` at `$2` except the one whose hash is `$3`.
const RETIRE_OTHERS: &str = "update email_confirmation_tokens set used_at = $2 \
     where user_id = $1 and used_at is null and token_hash <> $3";

/// The account of the live token `$1` at `$2`.
const OWNER: &str = "select user_id from email_confirmation_tokens \
     where token_hash = $1 and used_at is null and expires_at > $2";

/// Spends the live token `$1` of account `$3` at `$2`, returning the address it was sent to.
const SPEND: &str = "update email_confirmation_tokens set used_at = $2 \
     where token_hash = $1 and user_id = $3 and used_at is null and expires_at > $2 \
     returning email";

/// Confirms account `$1`'s address at `$3` if it is still `$2` and the account is active
/// (an address confirmed already keeps its time).
const CONFIRM: &str = "update users set email_verified = true, \
       email_verified_at = coalesce(email_verified_at, $3), updated_at = $3 \
     where id = $1 and email = $2 and is_active";

/// Stores a change token (`$1` hash, `$2` account, `$3` the new address, `$4` expiry, `$5`
/// now) if the account is active, its address is not `$3` already, and it was issued fewer
/// than `$7` tokens after `$6` (links of either kind count). Affects one row or none.
const ISSUE_CHANGE: &str = "insert into email_confirmation_tokens \
       (token_hash, user_id, email, expires_at, created_at) \
     select $1, id, $3, $4, $5 from users \
     where id = $2 and email <> $3 and is_active \
       and (select count(*) from email_confirmation_tokens t \
            where t.user_id = $2 and t.created_at > $6) < $7";

/// Makes `$2` account `$1`'s address, confirmed at `$3`, if its address is still `$4` (not
/// `$2`) and it is active. A unique violation means another account has `$2`.
const CHANGE: &str = "update users set email = $2, email_verified = true, \
       email_verified_at = $3, updated_at = $3 \
     where id = $1 and email = $4 and email <> $2 and is_active";

/// Deletes account `$1`'s password-reset tokens: links mailed to an address it no longer has.
const FORGET_RESET_LINKS: &str = "delete from password_reset_tokens where user_id = $1";

/// Stores `c` with `issue` ([`ISSUE`] or [`ISSUE_CHANGE`]) within the limit, spending the
/// account's other live links.
async fn issue(
    db: &dyn SqlDb,
    statement: &str,
    c: &NewEmailConfirmation,
    window_start: DateTime<Utc>,
    limit: u32,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    let mut tx = db.begin(false).await?;
    tx.lock_account(c.user_id).await?;
    let issued = tx
        .execute(
            statement,
            &[
                Arg::Text(&c.token_hash),
                Arg::Uuid(c.user_id),
                Arg::Text(&c.email),
                Arg::Time(c.expires_at),
                Arg::Time(c.now),
                Arg::Time(window_start),
                Arg::Int(i64::from(limit)),
            ],
        )
        .await?
        == 1;
    if issued {
        retire_others(tx.as_mut(), c.user_id, c.now, &c.token_hash).await?;
    }
    commit_if(tx, issued, events).await
}

async fn retire_others(
    tx: &mut (dyn SqlTx + '_),
    user_id: UserId,
    now: DateTime<Utc>,
    keep: &str,
) -> StoreResult<()> {
    tx.execute(
        RETIRE_OTHERS,
        &[Arg::Uuid(user_id), Arg::Time(now), Arg::Text(keep)],
    )
    .await?;
    Ok(())
}

/// [`porteiro_core::store::EmailConfirmationStore::issue_email_confirmation`].
///
/// # Errors
/// On store failure.
pub async fn issue_confirmation(
    db: &dyn SqlDb,
    c: &NewEmailConfirmation,
    window_start: DateTime<Utc>,
    limit: u32,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    issue(db, ISSUE, c, window_start, limit, events).await
}

/// [`porteiro_core::store::EmailConfirmationStore::issue_email_change`].
///
/// # Errors
/// On store failure.
pub async fn issue_change(
    db: &dyn SqlDb,
    c: &NewEmailConfirmation,
    window_start: DateTime<Utc>,
    limit: u32,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    issue(db, ISSUE_CHANGE, c, window_start, limit, events).await
}

/// [`porteiro_core::store::EmailConfirmationStore::confirmation_token_owner`].
///
/// # Errors
/// On store failure.
pub async fn owner(
    db: &dyn SqlDb,
    token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<UserId>> {
    db.read(OWNER, &[Arg::Text(token_hash), Arg::Time(now)])
        .await?
        .first()
        .map(|r| r.uuid("user_id"))
        .transpose()
}

/// Spends the live token `token_hash` of `owner` and applies it: `change` = `None` confirms the
/// address it was sent to ([`CONFIRM`]); `Some(current)` makes it the account's address while that
/// is still `current` ([`CHANGE`], then the reset links mailed to the old address go). A refusal
/// rolls the spend back, leaving the token live.
async fn apply(
    db: &dyn SqlDb,
    token_hash: &str,
    owner: UserId,
    change: Option<&str>,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    let mut tx = db.begin(false).await?;
    tx.lock_account(owner).await?;
    let spent = tx
        .fetch(
            SPEND,
            &[Arg::Text(token_hash), Arg::Time(now), Arg::Uuid(owner)],
        )
        .await?;
    let Some(spent) = spent.first() else {
        return Ok(false);
    };
    let email = spent.text("email")?;
    let applied = match change {
        None => {
            tx.execute(
                CONFIRM,
                &[Arg::Uuid(owner), Arg::Text(&email), Arg::Time(now)],
            )
            .await?
        }
        Some(current) => tx
            .execute(
                CHANGE,
                &[
                    Arg::Uuid(owner),
                    Arg::Text(&email),
                    Arg::Time(now),
                    Arg::Text(current),
                ],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict {
                    field: UNIQUE_VIOLATION,
                } => StoreError::Conflict { field: "email" },
                other => other,
            })?,
    } == 1;
    if !applied {
        return Ok(false);
    }
    retire_others(tx.as_mut(), owner, now, token_hash).await?;
    if change.is_some() {
        tx.execute(FORGET_RESET_LINKS, &[Arg::Uuid(owner)]).await?;
    }
    commit_if(tx, true, events).await
}

/// [`porteiro_core::store::EmailConfirmationStore::confirm_email`].
///
/// # Errors
/// On store failure.
pub async fn confirm(
    db: &dyn SqlDb,
    token_hash: &str,
    owner: UserId,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    apply(db, token_hash, owner, None, now, events).await
}

/// [`porteiro_core::store::EmailConfirmationStore::confirm_email_change`].
///
/// # Errors
/// `Conflict { field: "email" }` when another account has the address; on store failure.
pub async fn confirm_change(
    db: &dyn SqlDb,
    token_hash: &str,
    owner: UserId,
    current: &str,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    apply(db, token_hash, owner, Some(current), now, events).await
}

/// Implements [`porteiro_core::store::EmailConfirmationStore`] for a store type that implements
/// [`SqlDb`](crate::SqlDb).
#[macro_export]
macro_rules! impl_email_confirmation_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::porteiro_core::store::EmailConfirmationStore for $store {
            async fn issue_email_confirmation(
                &self,
                c: &::porteiro_core::domain::email_confirmation::NewEmailConfirmation,
                window_start: ::chrono::DateTime<::chrono::Utc>,
                limit: u32,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::email_confirmation::issue_confirmation(self, c, window_start, limit, events)
                    .await
            }
            async fn confirmation_token_owner(
                &self,
                token_hash: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> ::porteiro_core::store::StoreResult<Option<::uuid::Uuid>> {
                $crate::email_confirmation::owner(self, token_hash, now).await
            }
            async fn confirm_email(
                &self,
                token_hash: &str,
                owner: ::uuid::Uuid,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::email_confirmation::confirm(self, token_hash, owner, now, events).await
            }
            async fn issue_email_change(
                &self,
                c: &::porteiro_core::domain::email_confirmation::NewEmailConfirmation,
                window_start: ::chrono::DateTime<::chrono::Utc>,
                limit: u32,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::email_confirmation::issue_change(self, c, window_start, limit, events).await
            }
            async fn confirm_email_change(
                &self,
                token_hash: &str,
                owner: ::uuid::Uuid,
                current: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::email_confirmation::confirm_change(
                    self, token_hash, owner, current, now, events,
                )
                .await
            }
        }
    };
}
