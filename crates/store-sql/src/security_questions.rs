//! Security questions ([`SecurityQuestionStore`]), for both backends: the catalogue, users'
//! answers (arriving hashed), the question lock and recovery proofs (arriving hashed).
//!
//! Changes to one account's answers, and issuing its proofs, lock the account first
//! ([`SqlTx::lock_account`]), so the answer limit is exact under concurrency and a proof is never
//! issued beside a concurrent change of the answers it proves. Completing a reset with a proof
//! needs each backend's session revocation, so the backend provides that one function (see
//! [`impl_security_question_store!`]).
//!
//! [`SecurityQuestionStore`]: porteiro_core::store::SecurityQuestionStore

use chrono::{DateTime, Utc};
use porteiro_core::domain::UserId;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::security_question::{
    QuestionLock, SecurityAnswer, SecurityQuestion, SetAnswerOutcome, StoredAnswer,
};
use porteiro_core::store::{StoreError, StoreResult};
use uuid::Uuid;

use crate::{Arg, Row, SqlDb, SqlTx, UNIQUE_VIOLATION, commit_if};

const COLUMNS: &str = "id, question, is_active, created_at, updated_at";

/// Deletes account `$1`'s unspent recovery proofs: the answers they proved changed.
const FORGET_PROOFS: &str = "delete from recovery_proofs where user_id = $1 and used_at is null";

fn question(r: &Row) -> StoreResult<SecurityQuestion> {
    Ok(SecurityQuestion {
        id: r.uuid("id")?,
        text: r.text("question")?,
        active: r.flag("is_active")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn text_taken(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict {
            field: UNIQUE_VIOLATION,
        } => StoreError::Conflict { field: "text" },
        other => other,
    }
}

async fn question_in(tx: &mut (dyn SqlTx + '_), id: Uuid) -> StoreResult<Option<SecurityQuestion>> {
    let sql = format!("select {COLUMNS} from security_questions where id = $1");
    tx.fetch(&sql, &[Arg::Uuid(id)])
        .await?
        .first()
        .map(question)
        .transpose()
}

/// [`porteiro_core::store::SecurityQuestionStore::create_security_question`].
///
/// # Errors
/// `Conflict { field: "text" }`; on store failure.
pub async fn create(
    db: &dyn SqlDb,
    q: &SecurityQuestion,
    events: &[NewAuditEvent],
) -> StoreResult<SecurityQuestion> {
    let mut tx = db.begin(false).await?;
    tx.execute(
        "insert into security_questions (id, question, is_active, created_at, updated_at) \
         values ($1, $2, $3, $4, $5)",
        &[
            Arg::Uuid(q.id),
            Arg::Text(&q.text),
            Arg::Bool(q.active),
            Arg::Time(q.created_at),
            Arg::Time(q.updated_at),
        ],
    )
    .await
    .map_err(text_taken)?;
    commit_if(tx, true, events).await?;
    Ok(q.clone())
}

/// [`porteiro_core::store::SecurityQuestionStore::security_questions`].
///
/// # Errors
/// On store failure.
pub async fn list(db: &dyn SqlDb, active_only: bool) -> StoreResult<Vec<SecurityQuestion>> {
    let filter = if active_only { " where is_active" } else { "" };
    let sql = format!("select {COLUMNS} from security_questions{filter} order by question, id");
    db.read(&sql, &[]).await?.iter().map(question).collect()
}

/// [`porteiro_core::store::SecurityQuestionStore::security_question`].
///
/// # Errors
/// On store failure.
pub async fn get(db: &dyn SqlDb, id: Uuid) -> StoreResult<Option<SecurityQuestion>> {
    let sql = format!("select {COLUMNS} from security_questions where id = $1");
    db.read(&sql, &[Arg::Uuid(id)])
        .await?
        .first()
        .map(question)
        .transpose()
}

/// [`porteiro_core::store::SecurityQuestionStore::update_security_question`].
///
/// # Errors
/// `NotFound`; `Conflict { field: "text" }`; on store failure.
pub async fn update(
    db: &dyn SqlDb,
    id: Uuid,
    text: Option<&str>,
    active: Option<bool>,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<SecurityQuestion> {
    let mut tx = db.begin(false).await?;
    let current = question_in(tx.as_mut(), id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let next = SecurityQuestion {
        text: text.map_or_else(|| current.text.clone(), str::to_owned),
        active: active.unwrap_or(current.active),
        updated_at: now,
        ..current.clone()
    };
    if next.text == current.text && next.active == current.active {
        tx.commit().await?;
        return Ok(current);
    }
    tx.execute(
        "update security_questions set question = $2, is_active = $3, updated_at = $4 \
         where id = $1",
        &[
            Arg::Uuid(id),
            Arg::Text(&next.text),
            Arg::Bool(next.active),
            Arg::Time(now),
        ],
    )
    .await
    .map_err(text_taken)?;
    commit_if(tx, true, events).await?;
    Ok(next)
}

/// [`porteiro_core::store::SecurityQuestionStore::delete_security_question`].
///
/// # Errors
/// `NotFound`; on store failure.
pub async fn delete(
    db: &dyn SqlDb,
    id: Uuid,
    events: &[NewAuditEvent],
) -> StoreResult<SecurityQuestion> {
    let mut tx = db.begin(false).await?;
    let current = question_in(tx.as_mut(), id)
        .await?
        .ok_or(StoreError::NotFound)?;
    // Explicitly, rather than trusting the cascade to be enabled on every connection.
    tx.execute(
        "delete from user_security_answers where question_id = $1",
        &[Arg::Uuid(id)],
    )
    .await?;
    tx.execute(
        "delete from security_questions where id = $1",
        &[Arg::Uuid(id)],
    )
    .await?;
    commit_if(tx, true, events).await?;
    Ok(current)
}

/// [`porteiro_core::store::SecurityQuestionStore::set_security_answer`].
///
/// # Errors
/// On store failure.
pub async fn set_answer(
    db: &dyn SqlDb,
    user_id: UserId,
    question_id: Uuid,
    answer_hash: &str,
    max_answers: usize,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<SetAnswerOutcome> {
    let mut tx = db.begin(false).await?;
    tx.lock_account(user_id).await?;
    if !question_in(tx.as_mut(), question_id)
        .await?
        .is_some_and(|q| q.active)
    {
        return Ok(SetAnswerOutcome::QuestionUnavailable);
    }
    let replaced = tx
        .execute(
            "update user_security_answers set answer_hash = $3, updated_at = $4 \
             where user_id = $1 and question_id = $2",
            &[
                Arg::Uuid(user_id),
                Arg::Uuid(question_id),
                Arg::Text(answer_hash),
                Arg::Time(now),
            ],
        )
        .await?
        == 1;
    let outcome = if replaced {
        SetAnswerOutcome::Replaced
    } else {
        let rows = tx
            .fetch(
                "select count(*) as n from user_security_answers where user_id = $1",
                &[Arg::Uuid(user_id)],
            )
            .await?;
        let held = rows.first().map(|r| r.big("n")).transpose()?.unwrap_or(0);
        if usize::try_from(held).unwrap_or(usize::MAX) >= max_answers {
            return Ok(SetAnswerOutcome::TooMany);
        }
        tx.execute(
            "insert into user_security_answers \
               (user_id, question_id, answer_hash, created_at, updated_at) \
             values ($1, $2, $3, $4, $4)",
            &[
                Arg::Uuid(user_id),
                Arg::Uuid(question_id),
                Arg::Text(answer_hash),
                Arg::Time(now),
            ],
        )
        .await?;
        SetAnswerOutcome::Added
    };
    tx.execute(FORGET_PROOFS, &[Arg::Uuid(user_id)]).await?;
    commit_if(tx, true, events).await?;
    Ok(outcome)
}

/// [`porteiro_core::store::SecurityQuestionStore::security_answers`].
///
/// # Errors
/// On store failure.
pub async fn answers(db: &dyn SqlDb, user_id: UserId) -> StoreResult<Vec<SecurityAnswer>> {
    let rows = db
        .read(
            "select a.question_id, q.question, q.is_active, a.created_at, a.updated_at \
             from user_security_answers a join security_questions q on q.id = a.question_id \
             where a.user_id = $1",
            &[Arg::Uuid(user_id)],
        )
        .await?;
    let mut answers = rows
        .iter()
        .map(|r| {
            Ok(SecurityAnswer {
                question_id: r.uuid("question_id")?,
                question: r.text("question")?,
                active: r.flag("is_active")?,
                created_at: r.time("created_at")?,
                updated_at: r.time("updated_at")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    answers.sort_by_key(|a| a.question_id);
    Ok(answers)
}

/// [`porteiro_core::store::SecurityQuestionStore::stored_answers`].
///
/// # Errors
/// On store failure.
pub async fn stored_answers(db: &dyn SqlDb, user_id: UserId) -> StoreResult<Vec<StoredAnswer>> {
    let rows = db
        .read(
            "select a.question_id, q.question, a.answer_hash \
             from user_security_answers a join security_questions q on q.id = a.question_id \
             where a.user_id = $1 and q.is_active",
            &[Arg::Uuid(user_id)],
        )
        .await?;
    let mut answers = rows
        .iter()
        .map(|r| {
            Ok(StoredAnswer {
                question_id: r.uuid("question_id")?,
                question: r.text("question")?,
                answer_hash: r.text("answer_hash")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    answers.sort_by_key(|a| a.question_id);
    Ok(answers)
}

/// [`porteiro_core::store::SecurityQuestionStore::delete_security_answers`].
///
/// # Errors
/// On store failure.
pub async fn delete_answers(
    db: &dyn SqlDb,
    user_id: UserId,
    question_id: Option<Uuid>,
    events: &[NewAuditEvent],
) -> StoreResult<u64> {
    let mut tx = db.begin(false).await?;
    tx.lock_account(user_id).await?;
    let removed = match question_id {
        Some(q) => {
            tx.execute(
                "delete from user_security_answers where user_id = $1 and question_id = $2",
                &[Arg::Uuid(user_id), Arg::Uuid(q)],
            )
            .await?
        }
        None => {
            tx.execute(
                "delete from user_security_answers where user_id = $1",
                &[Arg::Uuid(user_id)],
            )
            .await?
        }
    };
    if removed > 0 {
        tx.execute(FORGET_PROOFS, &[Arg::Uuid(user_id)]).await?;
    }
    commit_if(tx, removed > 0, events).await?;
    Ok(removed)
}

/// [`porteiro_core::store::SecurityQuestionStore::question_lock`].
///
/// # Errors
/// On store failure.
pub async fn lock_state(db: &dyn SqlDb, user_id: UserId) -> StoreResult<QuestionLock> {
    let rows = db
        .read(
            "select question_failed_attempts, question_locked_until from users where id = $1",
            &[Arg::Uuid(user_id)],
        )
        .await?;
    let Some(r) = rows.first() else {
        return Ok(QuestionLock::default());
    };
    Ok(QuestionLock {
        failed_attempts: r.int("question_failed_attempts")?,
        locked_until: r.opt_time("question_locked_until")?,
    })
}

/// [`porteiro_core::store::SecurityQuestionStore::record_failed_answers`].
///
/// # Errors
/// On store failure.
pub async fn record_failure(
    db: &dyn SqlDb,
    user_id: UserId,
    now: DateTime<Utc>,
    max_attempts: i32,
    lock_until: DateTime<Utc>,
    failed: &NewAuditEvent,
    locked: &NewAuditEvent,
) -> StoreResult<bool> {
    // While locked: nothing changes. After a lock ran out the count starts again at 1.
    let mut tx = db.begin(false).await?;
    let rows = tx
        .fetch(
            "update users set \
               question_failed_attempts = case \
                 when question_locked_until > $2 then question_failed_attempts \
                 when question_locked_until is not null then 1 \
                 else question_failed_attempts + 1 end, \
               question_locked_until = case \
                 when question_locked_until > $2 then question_locked_until \
                 when (case when question_locked_until is not null then 1 \
                            else question_failed_attempts + 1 end) >= $3 then $4 \
                 else null end \
             where id = $1 \
             returning question_locked_until",
            &[
                Arg::Uuid(user_id),
                Arg::Time(now),
                Arg::Int(i64::from(max_attempts)),
                Arg::Time(lock_until),
            ],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    // The lock this failure would set ends at `lock_until`; an older lock ends earlier.
    let locked_now = row.opt_time("question_locked_until")? == Some(lock_until);
    let mut events = vec![failed.clone()];
    if locked_now {
        events.push(locked.clone());
    }
    commit_if(tx, true, &events).await?;
    Ok(locked_now)
}

/// [`porteiro_core::store::SecurityQuestionStore::issue_recovery_proof`].
///
/// # Errors
/// On store failure.
pub async fn issue_proof(
    db: &dyn SqlDb,
    user_id: UserId,
    proof_hash: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    let mut tx = db.begin(false).await?;
    tx.lock_account(user_id).await?;
    let cleared = tx
        .execute(
            "update users set question_failed_attempts = 0, question_locked_until = null \
             where id = $1 and is_active \
               and (question_locked_until is null or question_locked_until <= $2)",
            &[Arg::Uuid(user_id), Arg::Time(now)],
        )
        .await?
        == 1;
    if !cleared {
        return Ok(false);
    }
    tx.execute(FORGET_PROOFS, &[Arg::Uuid(user_id)]).await?;
    tx.execute(
        "insert into recovery_proofs (token_hash, user_id, expires_at, created_at) \
         values ($1, $2, $3, $4)",
        &[
            Arg::Text(proof_hash),
            Arg::Uuid(user_id),
            Arg::Time(expires_at),
            Arg::Time(now),
        ],
    )
    .await?;
    commit_if(tx, true, events).await
}

/// [`porteiro_core::store::SecurityQuestionStore::recovery_proof_owner`].
///
/// # Errors
/// On store failure.
pub async fn proof_owner(
    db: &dyn SqlDb,
    proof_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<UserId>> {
    db.read(
        "select user_id from recovery_proofs \
         where token_hash = $1 and used_at is null and expires_at > $2",
        &[Arg::Text(proof_hash), Arg::Time(now)],
    )
    .await?
    .first()
    .map(|r| r.uuid("user_id"))
    .transpose()
}

/// Implements [`porteiro_core::store::SecurityQuestionStore`] for a store type that implements
/// [`SqlDb`](crate::SqlDb). `$reset` names the store's inherent method completing a reset with
/// an optional proof: `(&self, token_hash, Option<proof_hash>, owner, new_hash, now, events)
/// -> StoreResult<Option<Vec<Uuid>>>`.
#[macro_export]
macro_rules! impl_security_question_store {
    ($store:ty, $reset:ident) => {
        #[::async_trait::async_trait]
        impl ::porteiro_core::store::SecurityQuestionStore for $store {
            async fn create_security_question(
                &self,
                question: &::porteiro_core::domain::security_question::SecurityQuestion,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                ::porteiro_core::domain::security_question::SecurityQuestion,
            > {
                $crate::security_questions::create(self, question, events).await
            }
            async fn security_questions(
                &self,
                active_only: bool,
            ) -> ::porteiro_core::store::StoreResult<
                Vec<::porteiro_core::domain::security_question::SecurityQuestion>,
            > {
                $crate::security_questions::list(self, active_only).await
            }
            async fn security_question(
                &self,
                id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<
                Option<::porteiro_core::domain::security_question::SecurityQuestion>,
            > {
                $crate::security_questions::get(self, id).await
            }
            async fn update_security_question(
                &self,
                id: ::uuid::Uuid,
                text: Option<&str>,
                active: Option<bool>,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                ::porteiro_core::domain::security_question::SecurityQuestion,
            > {
                $crate::security_questions::update(self, id, text, active, now, events).await
            }
            async fn delete_security_question(
                &self,
                id: ::uuid::Uuid,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                ::porteiro_core::domain::security_question::SecurityQuestion,
            > {
                $crate::security_questions::delete(self, id, events).await
            }
            async fn set_security_answer(
                &self,
                user_id: ::uuid::Uuid,
                question_id: ::uuid::Uuid,
                answer_hash: &str,
                max_answers: usize,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                ::porteiro_core::domain::security_question::SetAnswerOutcome,
            > {
                $crate::security_questions::set_answer(
                    self,
                    user_id,
                    question_id,
                    answer_hash,
                    max_answers,
                    now,
                    events,
                )
                .await
            }
            async fn security_answers(
                &self,
                user_id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<
                Vec<::porteiro_core::domain::security_question::SecurityAnswer>,
            > {
                $crate::security_questions::answers(self, user_id).await
            }
            async fn stored_answers(
                &self,
                user_id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<
                Vec<::porteiro_core::domain::security_question::StoredAnswer>,
            > {
                $crate::security_questions::stored_answers(self, user_id).await
            }
            async fn delete_security_answers(
                &self,
                user_id: ::uuid::Uuid,
                question_id: Option<::uuid::Uuid>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<u64> {
                $crate::security_questions::delete_answers(self, user_id, question_id, events).await
            }
            async fn question_lock(
                &self,
                user_id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<
                ::porteiro_core::domain::security_question::QuestionLock,
            > {
                $crate::security_questions::lock_state(self, user_id).await
            }
            async fn record_failed_answers(
                &self,
                user_id: ::uuid::Uuid,
                now: ::chrono::DateTime<::chrono::Utc>,
                max_attempts: i32,
                lock_until: ::chrono::DateTime<::chrono::Utc>,
                failed: &::porteiro_core::domain::audit::NewAuditEvent,
                locked: &::porteiro_core::domain::audit::NewAuditEvent,
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::security_questions::record_failure(
                    self,
                    user_id,
                    now,
                    max_attempts,
                    lock_until,
                    failed,
                    locked,
                )
                .await
            }
            async fn issue_recovery_proof(
                &self,
                user_id: ::uuid::Uuid,
                proof_hash: &str,
                expires_at: ::chrono::DateTime<::chrono::Utc>,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::security_questions::issue_proof(
                    self, user_id, proof_hash, expires_at, now, events,
                )
                .await
            }
            async fn recovery_proof_owner(
                &self,
                proof_hash: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> ::porteiro_core::store::StoreResult<Option<::uuid::Uuid>> {
                $crate::security_questions::proof_owner(self, proof_hash, now).await
            }
            async fn complete_reset_with_proof(
                &self,
                token_hash: &str,
                proof_hash: &str,
                owner: ::uuid::Uuid,
                new_hash: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<Option<Vec<::uuid::Uuid>>> {
                self.$reset(token_hash, Some(proof_hash), owner, new_hash, now, events)
                    .await
            }
        }
    };
}
