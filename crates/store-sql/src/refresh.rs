//! The refresh-token grace window, the same on both backends.

use chrono::{DateTime, Utc};
use porteiro_core::domain::session::{RotateOutcome, Rotation};
use porteiro_core::store::{SessionStore, StoreResult, UserStore};
use uuid::Uuid;

use crate::{Arg, SqlTx};

/// The live session in which a spent token may be replayed: the token `presented_hash` was spent
/// at or after `since`, and `next_hash` (its successor) is an unspent, unexpired token of the same
/// session, which is itself neither revoked nor expired. `None` otherwise: the caller then treats
/// the presentation as reuse. `since: None` (the window is off) is always `None`.
///
/// # Errors
/// On store failure.
pub async fn replayable_session(
    tx: &mut dyn SqlTx,
    presented_hash: &str,
    next_hash: &str,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<Option<Uuid>> {
    let Some(since) = since else {
        return Ok(None);
    };
    let rows = tx
        .fetch(
            "select s.id from refresh_tokens spent \
               join refresh_tokens succ on succ.session_id = spent.session_id \
               join sessions s on s.id = spent.session_id \
             where spent.token_hash = $1 and spent.used_at >= $3 \
               and succ.token_hash = $2 and succ.used_at is null and succ.expires_at > $4 \
               and s.revoked_at is null and s.expires_at > $4",
            &[
                Arg::Text(presented_hash),
                Arg::Text(next_hash),
                Arg::Time(since),
                Arg::Time(now),
            ],
        )
        .await?;
    rows.first().map(|r| r.uuid("id")).transpose()
}

/// The answer to a replay within the grace window: the session and its account as they are now
/// (`Invalid` if either went away or the session ended meanwhile).
///
/// # Errors
/// On store failure.
pub async fn replayed<S>(
    store: &S,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<RotateOutcome>
where
    S: SessionStore + UserStore + ?Sized,
{
    let Some(session) = store.session_by_id(session_id).await? else {
        return Ok(RotateOutcome::Invalid);
    };
    if session.revoked_at.is_some() || session.expires_at <= now {
        return Ok(RotateOutcome::Invalid);
    }
    Ok(match store.user_by_id(session.user_id).await? {
        Some(user) => RotateOutcome::Replayed(Box::new(Rotation { session, user })),
        None => RotateOutcome::Invalid,
    })
}
