//! New-device sign-in alerts ([`SignInAlertStore`]), for both backends.
//!
//! Opening a session is the backend's own statement (its locking differs); the macro takes the
//! backend function that opens a session in a transaction it hands back uncommitted, and the
//! device, the alert link, its mail and the events are written here in that transaction.
//!
//! [`SignInAlertStore`]: porteiro_core::store::SignInAlertStore

use chrono::{DateTime, Utc};
use porteiro_core::domain::UserId;
use porteiro_core::domain::audit::{NewAuditEvent, kind};
use porteiro_core::domain::sign_in_alert::{
    DeviceSighting, DeviceState, Disowned, LoginAttempt, SignInAlert,
};
use porteiro_core::store::{StoreError, StoreResult};
use uuid::Uuid;

use crate::{Arg, SqlDb, SqlTx};

/// Most devices remembered per account (the most recently seen are kept): an API client
/// roaming over many networks cannot grow the table without bound.
pub const MAX_SIGN_IN_DEVICES: i64 = 50;

/// Whether account `$1` signed in from device `$2`, and from any device.
const STATE: &str = "select \
       (select count(*) from sign_in_devices where user_id = $1 and device_key = $2) as known, \
       (select count(*) from (select 1 from sign_in_devices where user_id = $1 limit 1) t) as seen";

/// Records device `$2` of account `$1` first seen at `$3`, unless it is there already.
const INSERT_DEVICE: &str = "insert into sign_in_devices (user_id, device_key, first_seen_at, last_seen_at) \
     values ($1, $2, $3, $3) on conflict (user_id, device_key) do nothing";

/// Device `$2` of account `$1` was seen again at `$3`.
const TOUCH_DEVICE: &str =
    "update sign_in_devices set last_seen_at = $3 where user_id = $1 and device_key = $2";

/// Devices of account `$1` other than `$2`.
const OTHERS: &str =
    "select count(*) as n from sign_in_devices where user_id = $1 and device_key <> $2";

/// Keeps account `$1`'s `$2` most recently seen devices.
const TRIM: &str = "delete from sign_in_devices where user_id = $1 and device_key not in \
     (select device_key from sign_in_devices where user_id = $1 \
      order by last_seen_at desc, device_key limit $2)";

/// Stores a link (`$1` hash, `$2` account, `$3` session, `$4` expiry, `$5` now) if the account
/// wants alerts.
const INSERT_ALERT: &str = "insert into sign_in_alerts \
       (token_hash, user_id, session_id, expires_at, created_at) \
     select $1, id, $3, $4, $5 from users where id = $2 and login_alerts";

/// Queues a sealed mail (`$1` id, `$2` payload) due at `$3`.
const QUEUE_MAIL: &str = "insert into mail_outbox (id, payload, next_attempt_at, created_at, updated_at) \
     values ($1, $2, $3, $3, $3)";

/// The live link `$1` at `$2`.
const LIVE: &str = "select user_id, session_id, expires_at from sign_in_alerts \
     where token_hash = $1 and used_at is null and expires_at > $2";

/// Spends the live link `$1` at `$2`.
const SPEND: &str = "update sign_in_alerts set used_at = $2 \
     where token_hash = $1 and used_at is null and expires_at > $2 \
     returning user_id, session_id";

/// Revokes session `$1` of account `$2` at `$3`, if still live.
const REVOKE: &str = "update sessions set revoked_at = $3, revoke_reason = 'disowned', updated_at = $3 \
     where id = $1 and user_id = $2 and revoked_at is null";

/// Account `$1` must reset its password before signing in again.
const REQUIRE_RESET: &str =
    "update users set password_reset_required = true, updated_at = $2 where id = $1";

/// Account `$1`'s sign-in events with ids below `$2`, newest first, at most `$3`.
const HISTORY: &str = "select id, occurred_at, outcome, ip_address, user_agent, details \
     from audit_events where user_id = $1 and id < $2 and event_type in ($4, $5) \
     order by id desc limit $3";

/// [`porteiro_core::store::SignInAlertStore::sign_in_device_state`].
///
/// # Errors
/// On store failure.
pub async fn device_state(
    db: &dyn SqlDb,
    user_id: UserId,
    device_key: &str,
) -> StoreResult<DeviceState> {
    let rows = db
        .read(STATE, &[Arg::Uuid(user_id), Arg::Text(device_key)])
        .await?;
    let Some(row) = rows.first() else {
        return Ok(DeviceState::default());
    };
    Ok(DeviceState {
        known: row.big("known")? > 0,
        any: row.big("seen")? > 0,
    })
}

/// Records the sighting in `tx` (after the backend opened the session `session_id` in it), and
/// stores the alert when it applies. Returns whether it did.
///
/// # Errors
/// On store failure.
pub async fn note_device(
    tx: &mut (dyn SqlTx + '_),
    session_id: Uuid,
    sighting: &DeviceSighting,
) -> StoreResult<bool> {
    let (user, now) = (Arg::Uuid(sighting.user_id), Arg::Time(sighting.now));
    let new = tx
        .execute(INSERT_DEVICE, &[user, Arg::Text(&sighting.device_key), now])
        .await?
        == 1;
    if !new {
        tx.execute(TOUCH_DEVICE, &[user, Arg::Text(&sighting.device_key), now])
            .await?;
    }
    // Another device before this one: the account signed in before from elsewhere (its very
    // first device gets no alert).
    let elsewhere = new
        && tx
            .fetch(OTHERS, &[user, Arg::Text(&sighting.device_key)])
            .await?
            .first()
            .map(|r| r.big("n"))
            .transpose()?
            .unwrap_or(0)
            > 0;
    for key in &sighting.also_keys {
        if tx
            .execute(INSERT_DEVICE, &[user, Arg::Text(key), now])
            .await?
            == 0
        {
            tx.execute(TOUCH_DEVICE, &[user, Arg::Text(key), now])
                .await?;
        }
    }
    if new {
        tx.execute(TRIM, &[user, Arg::Int(MAX_SIGN_IN_DEVICES)])
            .await?;
    }
    let Some(alert) = sighting.alert.as_ref().filter(|_| elsewhere) else {
        return Ok(false);
    };
    let stored = tx
        .execute(
            INSERT_ALERT,
            &[
                Arg::Text(&alert.token_hash),
                user,
                Arg::Uuid(session_id),
                Arg::Time(alert.expires_at),
                now,
            ],
        )
        .await?
        == 1;
    if stored {
        tx.execute(
            QUEUE_MAIL,
            &[Arg::Uuid(alert.mail_id), Arg::Bytes(&alert.mail), now],
        )
        .await?;
        tx.write_events(std::slice::from_ref(&alert.event)).await?;
    }
    Ok(stored)
}

/// [`porteiro_core::store::SignInAlertStore::sign_in_alert`].
///
/// # Errors
/// On store failure.
pub async fn live_alert(
    db: &dyn SqlDb,
    token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<SignInAlert>> {
    db.read(LIVE, &[Arg::Text(token_hash), Arg::Time(now)])
        .await?
        .first()
        .map(|r| {
            Ok(SignInAlert {
                user_id: r.uuid("user_id")?,
                session_id: r.uuid("session_id")?,
                expires_at: r.time("expires_at")?,
            })
        })
        .transpose()
}

/// [`porteiro_core::store::SignInAlertStore::disown_sign_in`].
///
/// # Errors
/// On store failure.
pub async fn disown(
    db: &dyn SqlDb,
    token_hash: &str,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<Option<Disowned>> {
    let mut tx = db.begin(false).await?;
    let spent = tx
        .fetch(SPEND, &[Arg::Text(token_hash), Arg::Time(now)])
        .await?;
    let Some(spent) = spent.first() else {
        return Ok(None);
    };
    let (user_id, session_id) = (spent.uuid("user_id")?, spent.uuid("session_id")?);
    let session_revoked = tx
        .execute(
            REVOKE,
            &[Arg::Uuid(session_id), Arg::Uuid(user_id), Arg::Time(now)],
        )
        .await?
        == 1;
    if session_revoked {
        tx.notify_sessions_revoked(&[session_id]).await?;
    }
    tx.execute(REQUIRE_RESET, &[Arg::Uuid(user_id), Arg::Time(now)])
        .await?;
    tx.write_events(events).await?;
    tx.commit().await?;
    Ok(Some(Disowned {
        user_id,
        session_id,
        session_revoked,
    }))
}

/// [`porteiro_core::store::SignInAlertStore::login_history`].
///
/// # Errors
/// On store failure.
pub async fn history(
    db: &dyn SqlDb,
    user_id: UserId,
    before_id: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<LoginAttempt>> {
    db.read(
        HISTORY,
        &[
            Arg::Uuid(user_id),
            Arg::Int(before_id.unwrap_or(i64::MAX)),
            Arg::Int(i64::from(limit)),
            Arg::Text(kind::SIGN_IN_SUCCEEDED),
            Arg::Text(kind::SIGN_IN_FAILED),
        ],
    )
    .await?
    .iter()
    .map(|r| {
        let details = r.text("details")?;
        Ok(LoginAttempt {
            id: r.big("id")?,
            occurred_at: r.time("occurred_at")?,
            outcome: r.text("outcome")?,
            ip_address: r.opt_text("ip_address")?,
            user_agent: r.opt_text("user_agent")?,
            details: serde_json::from_str(&details)
                .map_err(|e| StoreError::Backend(anyhow::Error::new(e)))?,
        })
    })
    .collect()
}

/// Implements [`porteiro_core::store::SignInAlertStore`] for a store type that implements
/// [`SqlDb`](crate::SqlDb). `$open` is the backend's
/// `async fn(&Store, &NewSession, &NewRefreshToken) -> StoreResult<Option<(Box<dyn SqlTx + '_>, Session)>>`:
/// it opens the session (with `create_session`'s checks) in a transaction it returns
/// uncommitted.
#[macro_export]
macro_rules! impl_sign_in_alert_store {
    ($store:ty, $open:path) => {
        #[::async_trait::async_trait]
        impl ::porteiro_core::store::SignInAlertStore for $store {
            async fn sign_in_device_state(
                &self,
                user_id: ::uuid::Uuid,
                device_key: &str,
            ) -> ::porteiro_core::store::StoreResult<
                ::porteiro_core::domain::sign_in_alert::DeviceState,
            > {
                $crate::sign_in_alerts::device_state(self, user_id, device_key).await
            }
            async fn create_session_noting_device(
                &self,
                session: &::porteiro_core::domain::NewSession,
                refresh: &::porteiro_core::domain::session::NewRefreshToken,
                sighting: &::porteiro_core::domain::sign_in_alert::DeviceSighting,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                Option<(::porteiro_core::domain::Session, bool)>,
            > {
                let Some((mut tx, opened)) = $open(self, session, refresh).await? else {
                    return Ok(None);
                };
                let alerted =
                    $crate::sign_in_alerts::note_device(tx.as_mut(), opened.id, sighting).await?;
                tx.write_events(events).await?;
                tx.commit().await?;
                Ok(Some((opened, alerted)))
            }
            async fn sign_in_alert(
                &self,
                token_hash: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> ::porteiro_core::store::StoreResult<
                Option<::porteiro_core::domain::sign_in_alert::SignInAlert>,
            > {
                $crate::sign_in_alerts::live_alert(self, token_hash, now).await
            }
            async fn disown_sign_in(
                &self,
                token_hash: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<
                Option<::porteiro_core::domain::sign_in_alert::Disowned>,
            > {
                $crate::sign_in_alerts::disown(self, token_hash, now, events).await
            }
            async fn login_history(
                &self,
                user_id: ::uuid::Uuid,
                before_id: Option<i64>,
                limit: u32,
            ) -> ::porteiro_core::store::StoreResult<
                Vec<::porteiro_core::domain::sign_in_alert::LoginAttempt>,
            > {
                $crate::sign_in_alerts::history(self, user_id, before_id, limit).await
            }
        }
    };
}
