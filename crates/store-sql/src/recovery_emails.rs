//! Recovery addresses and their verification tokens ([`RecoveryEmailStore`]), for both
//! backends. Every change locks the account first ([`SqlTx::lock_account`]), so concurrent
//! requests of one account see each other's addresses and tokens (the limits are exact) and take
//! their locks in one order. That a verified address has one owner is the unique partial index
//! `recovery_emails_verified`'s job: a verification racing another account's is refused by it
//! and reported as `Taken`.
//!
//! [`RecoveryEmailStore`]: porteiro_core::store::RecoveryEmailStore

use chrono::{DateTime, Utc};
use porteiro_core::domain::UserId;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::recovery_email::{
    AddOutcome, IssueLimits, IssueOutcome, NewRecoveryEmail, NewRecoveryEmailToken, RecoveryEmail,
    VerifyOutcome,
};
use porteiro_core::store::{StoreError, StoreResult};
use uuid::Uuid;

use crate::{Arg, Row, SqlDb, SqlTx, UNIQUE_VIOLATION, commit_if};

/// Account `$1`'s addresses with the expiry of each one's newest token live at `$2`.
const LIST: &str = "select r.id, r.user_id, r.email, r.verified_at, r.created_at, r.updated_at, \
       (select max(t.expires_at) from recovery_email_tokens t \
        where t.recovery_email_id = r.id and t.used_at is null and t.expires_at > $2) \
         as verification_expires_at \
     from recovery_emails r where r.user_id = $1 order by r.created_at, r.id";

/// Account `$1`'s address `$2`.
const ONE: &str = "select r.id, r.user_id, r.email, r.verified_at, r.created_at, r.updated_at \
     from recovery_emails r where r.user_id = $1 and r.id = $2";

/// How many addresses account `$1` has, whether it has address `$2`, and how many tokens its
/// addresses were issued after `$3`.
const ACCOUNT_STATE: &str = "select \
       (select count(*) from recovery_emails where user_id = $1) as addresses, \
       (select count(*) from recovery_emails where user_id = $1 and email = $2) as same, \
       (select count(*) from recovery_email_tokens t join recovery_emails r \
          on r.id = t.recovery_email_id where r.user_id = $1 and t.created_at > $3) as issued";

/// Tokens issued for address `$1` after `$2`, and for all of its account's (`$3`) addresses.
const ISSUED: &str = "select \
       (select count(*) from recovery_email_tokens where recovery_email_id = $1 \
          and created_at > $2) as address, \
       (select count(*) from recovery_email_tokens t join recovery_emails r \
          on r.id = t.recovery_email_id where r.user_id = $3 and t.created_at > $2) as account";

const INSERT: &str = "insert into recovery_emails (id, user_id, email, verified_at, created_at, \
       updated_at) values ($1, $2, $3, null, $4, $4)";

const INSERT_TOKEN: &str = "insert into recovery_email_tokens \
       (token_hash, recovery_email_id, expires_at, used_at, created_at) \
     values ($1, $2, $3, null, $4)";

/// Spends address `$1`'s live tokens at `$2`, except `$3`.
const RETIRE_OTHERS: &str = "update recovery_email_tokens set used_at = $2 \
     where recovery_email_id = $1 and used_at is null and token_hash <> $3";

/// The address of the live token `$1` at `$2`.
const TOKEN_ADDRESS: &str = "select r.id, r.user_id, r.email, r.verified_at, r.created_at, \
       r.updated_at from recovery_email_tokens t join recovery_emails r \
       on r.id = t.recovery_email_id \
     where t.token_hash = $1 and t.used_at is null and t.expires_at > $2";

/// Spends the live token `$1` of address `$3` at `$2`.
const SPEND: &str = "update recovery_email_tokens set used_at = $2 \
     where token_hash = $1 and recovery_email_id = $3 and used_at is null and expires_at > $2";

/// Verifies address `$1` at `$2` unless it is verified already. (A unique violation: another
/// account has it verified.)
const VERIFY: &str = "update recovery_emails set verified_at = $2, updated_at = $2 \
     where id = $1 and verified_at is null";

/// Whether an account other than `$1` has address `$2` as its own or as a verified recovery
/// address.
const TAKEN: &str = "select \
       exists (select 1 from users where email = $2 and id <> $1) as primary_taken, \
       exists (select 1 from recovery_emails where email = $2 and user_id <> $1 \
               and verified_at is not null) as recovery_taken";

const DELETE: &str = "delete from recovery_emails where user_id = $1 and id = $2";

const OWNER: &str =
    "select user_id from recovery_emails where email = $1 and verified_at is not null";

fn address(r: &Row) -> StoreResult<RecoveryEmail> {
    Ok(RecoveryEmail {
        id: r.uuid("id")?,
        user_id: r.uuid("user_id")?,
        email: r.text("email")?,
        verified_at: r.opt_time("verified_at")?,
        verification_expires_at: None,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

async fn one(
    tx: &mut (dyn SqlTx + '_),
    user_id: UserId,
    id: Uuid,
) -> StoreResult<Option<RecoveryEmail>> {
    tx.fetch(ONE, &[Arg::Uuid(user_id), Arg::Uuid(id)])
        .await?
        .first()
        .map(address)
        .transpose()
}

async fn insert_token(
    tx: &mut (dyn SqlTx + '_),
    id: Uuid,
    token: &NewRecoveryEmailToken,
) -> StoreResult<()> {
    tx.execute(
        INSERT_TOKEN,
        &[
            Arg::Text(&token.token_hash),
            Arg::Uuid(id),
            Arg::Time(token.expires_at),
            Arg::Time(token.now),
        ],
    )
    .await?;
    tx.execute(
        RETIRE_OTHERS,
        &[
            Arg::Uuid(id),
            Arg::Time(token.now),
            Arg::Text(&token.token_hash),
        ],
    )
    .await?;
    Ok(())
}

fn count(r: &Row, col: &str) -> StoreResult<u64> {
    Ok(u64::try_from(r.big(col)?).unwrap_or(0))
}

/// [`porteiro_core::store::RecoveryEmailStore::recovery_emails`].
///
/// # Errors
/// On store failure.
pub async fn list(
    db: &dyn SqlDb,
    user_id: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Vec<RecoveryEmail>> {
    db.read(LIST, &[Arg::Uuid(user_id), Arg::Time(now)])
        .await?
        .iter()
        .map(|r| {
            Ok(RecoveryEmail {
                verification_expires_at: r.opt_time("verification_expires_at")?,
                ..address(r)?
            })
        })
        .collect()
}

/// [`porteiro_core::store::RecoveryEmailStore::add_recovery_email`].
///
/// # Errors
/// On store failure.
pub async fn add(
    db: &dyn SqlDb,
    new: &NewRecoveryEmail,
    max: u32,
    limits: IssueLimits,
    events: &[NewAuditEvent],
) -> StoreResult<AddOutcome> {
    let mut tx = db.begin(false).await?;
    tx.lock_account(new.user_id).await?;
    let rows = tx
        .fetch(
            ACCOUNT_STATE,
            &[
                Arg::Uuid(new.user_id),
                Arg::Text(&new.email),
                Arg::Time(limits.window_start),
            ],
        )
        .await?;
    let state = rows.first().ok_or(StoreError::NotFound)?;
    if count(state, "same")? > 0 {
        return Ok(AddOutcome::Duplicate);
    }
    if count(state, "addresses")? >= u64::from(max) {
        return Ok(AddOutcome::LimitReached);
    }
    if count(state, "issued")? >= u64::from(limits.per_account) {
        return Ok(AddOutcome::RateLimited);
    }
    let now = new.token.now;
    let inserted = tx
        .execute(
            INSERT,
            &[
                Arg::Uuid(new.id),
                Arg::Uuid(new.user_id),
                Arg::Text(&new.email),
                Arg::Time(now),
            ],
        )
        .await;
    match inserted {
        Ok(_) => {}
        // The account row is locked, so only a deleted account gets here (no such user: the
        // foreign key) or a duplicate (checked above); either way nothing is added.
        Err(StoreError::Conflict {
            field: UNIQUE_VIOLATION,
        }) => return Ok(AddOutcome::Duplicate),
        Err(e) => return Err(e),
    }
    insert_token(tx.as_mut(), new.id, &new.token).await?;
    let added = one(tx.as_mut(), new.user_id, new.id)
        .await?
        .ok_or(StoreError::NotFound)?;
    commit_if(tx, true, events).await?;
    Ok(AddOutcome::Added(RecoveryEmail {
        verification_expires_at: Some(new.token.expires_at),
        ..added
    }))
}

/// [`porteiro_core::store::RecoveryEmailStore::issue_recovery_email_token`].
///
/// # Errors
/// On store failure.
pub async fn issue(
    db: &dyn SqlDb,
    user_id: UserId,
    id: Uuid,
    token: &NewRecoveryEmailToken,
    limits: IssueLimits,
    events: &[NewAuditEvent],
) -> StoreResult<IssueOutcome> {
    let mut tx = db.begin(false).await?;
    tx.lock_account(user_id).await?;
    let Some(found) = one(tx.as_mut(), user_id, id).await? else {
        return Ok(IssueOutcome::NotFound);
    };
    if found.is_verified() {
        return Ok(IssueOutcome::AlreadyVerified);
    }
    let rows = tx
        .fetch(
            ISSUED,
            &[
                Arg::Uuid(id),
                Arg::Time(limits.window_start),
                Arg::Uuid(user_id),
            ],
        )
        .await?;
    let issued = rows.first().ok_or(StoreError::NotFound)?;
    if count(issued, "address")? >= u64::from(limits.per_address)
        || count(issued, "account")? >= u64::from(limits.per_account)
    {
        return Ok(IssueOutcome::RateLimited);
    }
    insert_token(tx.as_mut(), id, token).await?;
    commit_if(tx, true, events).await?;
    Ok(IssueOutcome::Issued(RecoveryEmail {
        verification_expires_at: Some(token.expires_at),
        ..found
    }))
}

/// [`porteiro_core::store::RecoveryEmailStore::recovery_email_token_address`].
///
/// # Errors
/// On store failure.
pub async fn token_address(
    db: &dyn SqlDb,
    token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<RecoveryEmail>> {
    db.read(TOKEN_ADDRESS, &[Arg::Text(token_hash), Arg::Time(now)])
        .await?
        .first()
        .map(address)
        .transpose()
}

/// [`porteiro_core::store::RecoveryEmailStore::verify_recovery_email`].
///
/// # Errors
/// On store failure.
pub async fn verify(
    db: &dyn SqlDb,
    token_hash: &str,
    target: &RecoveryEmail,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<VerifyOutcome> {
    let mut tx = db.begin(false).await?;
    tx.lock_account(target.user_id).await?;
    let spent = tx
        .execute(
            SPEND,
            &[Arg::Text(token_hash), Arg::Time(now), Arg::Uuid(target.id)],
        )
        .await?;
    if spent != 1 {
        return Ok(VerifyOutcome::Invalid);
    }
    let Some(found) = one(tx.as_mut(), target.user_id, target.id).await? else {
        return Ok(VerifyOutcome::Invalid);
    };
    if found.is_verified() {
        return Ok(VerifyOutcome::Invalid);
    }
    let taken = tx
        .fetch(TAKEN, &[Arg::Uuid(found.user_id), Arg::Text(&found.email)])
        .await?;
    let taken = taken.first().ok_or(StoreError::NotFound)?;
    if taken.flag("primary_taken")? || taken.flag("recovery_taken")? {
        return Ok(VerifyOutcome::Taken);
    }
    match tx
        .execute(VERIFY, &[Arg::Uuid(found.id), Arg::Time(now)])
        .await
    {
        Ok(1) => {}
        Ok(_) => return Ok(VerifyOutcome::Invalid),
        // Another account verified the address meanwhile (its transaction committed first).
        Err(StoreError::Conflict {
            field: UNIQUE_VIOLATION,
        }) => return Ok(VerifyOutcome::Taken),
        Err(e) => return Err(e),
    }
    tx.execute(
        RETIRE_OTHERS,
        &[Arg::Uuid(found.id), Arg::Time(now), Arg::Text(token_hash)],
    )
    .await?;
    commit_if(tx, true, events).await?;
    Ok(VerifyOutcome::Verified(RecoveryEmail {
        verified_at: Some(now),
        updated_at: now,
        ..found
    }))
}

/// [`porteiro_core::store::RecoveryEmailStore::delete_recovery_email`].
///
/// # Errors
/// On store failure.
pub async fn delete(
    db: &dyn SqlDb,
    user_id: UserId,
    id: Uuid,
    events: &[NewAuditEvent],
) -> StoreResult<Option<RecoveryEmail>> {
    let mut tx = db.begin(false).await?;
    tx.lock_account(user_id).await?;
    let Some(found) = one(tx.as_mut(), user_id, id).await? else {
        return Ok(None);
    };
    let deleted = tx
        .execute(DELETE, &[Arg::Uuid(user_id), Arg::Uuid(id)])
        .await?
        == 1;
    commit_if(tx, deleted, events).await?;
    Ok(deleted.then_some(found))
}

/// [`porteiro_core::store::RecoveryEmailStore::verified_recovery_email_owner`].
///
/// # Errors
/// On store failure.
pub async fn verified_owner(db: &dyn SqlDb, email: &str) -> StoreResult<Option<UserId>> {
    db.read(OWNER, &[Arg::Text(email)])
        .await?
        .first()
        .map(|r| r.uuid("user_id"))
        .transpose()
}

/// [`porteiro_core::store::RecoveryEmailStore::recovery_email_taken`].
///
/// # Errors
/// On store failure.
pub async fn taken(db: &dyn SqlDb, user_id: UserId, email: &str) -> StoreResult<bool> {
    let rows = db
        .read(TAKEN, &[Arg::Uuid(user_id), Arg::Text(email)])
        .await?;
    let row = rows.first().ok_or(StoreError::NotFound)?;
    Ok(row.flag("primary_taken")? || row.flag("recovery_taken")?)
}

/// Implements [`porteiro_core::store::RecoveryEmailStore`] for a store type that implements
/// [`SqlDb`](crate::SqlDb).
#[macro_export]
macro_rules! impl_recovery_email_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::porteiro_core::store::RecoveryEmailStore for $store {
            async fn recovery_emails(
                &self,
                user_id: ::uuid::Uuid,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> ::porteiro_core::store::StoreResult<
                Vec<::porteiro_core::domain::recovery_email::RecoveryEmail>,
            > {
                $crate::recovery_emails::list(self, user_id, now).await
            }
            async fn add_recovery_email(
                &self,
                new: &::porteiro_core::domain::recovery_email::NewRecoveryEmail,
                max: u32,
                limits: ::porteiro_core::domain::recovery_email::IssueLimits,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                ::porteiro_core::domain::recovery_email::AddOutcome,
            > {
                $crate::recovery_emails::add(self, new, max, limits, events).await
            }
            async fn issue_recovery_email_token(
                &self,
                user_id: ::uuid::Uuid,
                id: ::uuid::Uuid,
                token: &::porteiro_core::domain::recovery_email::NewRecoveryEmailToken,
                limits: ::porteiro_core::domain::recovery_email::IssueLimits,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                ::porteiro_core::domain::recovery_email::IssueOutcome,
            > {
                $crate::recovery_emails::issue(self, user_id, id, token, limits, events).await
            }
            async fn recovery_email_token_address(
                &self,
                token_hash: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> ::porteiro_core::store::StoreResult<
                Option<::porteiro_core::domain::recovery_email::RecoveryEmail>,
            > {
                $crate::recovery_emails::token_address(self, token_hash, now).await
            }
            async fn verify_recovery_email(
                &self,
                token_hash: &str,
                address: &::porteiro_core::domain::recovery_email::RecoveryEmail,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                ::porteiro_core::domain::recovery_email::VerifyOutcome,
            > {
                $crate::recovery_emails::verify(self, token_hash, address, now, events).await
            }
            async fn delete_recovery_email(
                &self,
                user_id: ::uuid::Uuid,
                id: ::uuid::Uuid,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                Option<::porteiro_core::domain::recovery_email::RecoveryEmail>,
            > {
                $crate::recovery_emails::delete(self, user_id, id, events).await
            }
            async fn verified_recovery_email_owner(
                &self,
                email: &str,
            ) -> ::porteiro_core::store::StoreResult<Option<::uuid::Uuid>> {
                $crate::recovery_emails::verified_owner(self, email).await
            }
            async fn recovery_email_taken(
                &self,
                user_id: ::uuid::Uuid,
                email: &str,
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::recovery_emails::taken(self, user_id, email).await
            }
        }
    };
}
