//! Row decoding: Unix-millisecond times and UUID text into domain types.

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use porteiro_core::domain::mfa::decode_names;
use porteiro_core::domain::rbac::roles_from_column;
use porteiro_core::domain::webhook::StoredColumns;
use porteiro_core::domain::{Session, User};
use porteiro_core::store::{StoreError, StoreResult};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::backend;

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn opt_ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(ms)
}

fn from_ms(v: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("timestamp out of range: {v}")))
}

pub(crate) fn time(row: &SqliteRow, col: &str) -> StoreResult<DateTime<Utc>> {
    from_ms(row.try_get(col).map_err(backend)?)
}

pub(crate) fn opt_time(row: &SqliteRow, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(col)
        .map_err(backend)?
        .map(from_ms)
        .transpose()
}

pub(crate) fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s)
        .map_err(|e| StoreError::Backend(anyhow::anyhow!("bad uuid in database: {e}")))
}

pub(crate) fn uuid(row: &SqliteRow, col: &str) -> StoreResult<Uuid> {
    parse_uuid(&row.try_get::<String, _>(col).map_err(backend)?)
}

pub(crate) fn user_from_row(r: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: uuid(r, "id")?,
        username: r.try_get("username").map_err(backend)?,
        email: r.try_get("email").map_err(backend)?,
        first_name: r.try_get("first_name").map_err(backend)?,
        last_name: r.try_get("last_name").map_err(backend)?,
        password_hash: r.try_get("password_hash").map_err(backend)?,
        is_active: r.try_get("is_active").map_err(backend)?,
        roles: roles_from_column(
            r.try_get::<Option<String>, _>("roles")
                .map_err(backend)?
                .as_deref(),
        ),
        email_verified: r.try_get("email_verified").map_err(backend)?,
        email_verified_at: opt_time(r, "email_verified_at")?,
        failed_login_attempts: r.try_get("failed_login_attempts").map_err(backend)?,
        locked_until: opt_time(r, "locked_until")?,
        locale: r.try_get("locale").map_err(backend)?,
        credential_epoch: r.try_get("credential_epoch").map_err(backend)?,
        login_alerts: r.try_get("login_alerts").map_err(backend)?,
        accept_messages: r.try_get("accept_messages").map_err(backend)?,
        password_reset_required: r.try_get("password_reset_required").map_err(backend)?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

pub(crate) fn session_from_row(r: &SqliteRow) -> StoreResult<Session> {
    Ok(Session {
        id: uuid(r, "id")?,
        user_id: uuid(r, "user_id")?,
        created_at: time(r, "created_at")?,
        last_active_at: time(r, "last_active_at")?,
        expires_at: time(r, "expires_at")?,
        revoked_at: opt_time(r, "revoked_at")?,
        ip_address: r.try_get("ip_address").map_err(backend)?,
        user_agent: r.try_get("user_agent").map_err(backend)?,
        device_name: r.try_get("device_name").map_err(backend)?,
        device_type: r.try_get("device_type").map_err(backend)?,
        os: r.try_get("os").map_err(backend)?,
        browser: r.try_get("browser").map_err(backend)?,
        amr: decode_names(&r.try_get::<String, _>("amr").map_err(backend)?),
    })
}

/// A row seen through [`StoredColumns`]: ids are UUID text, times Unix milliseconds.
pub(crate) struct Cols<R>(pub(crate) R);

/// An owned row, for [`porteiro_store_sql`]'s shared code.
pub(crate) type OwnedCols = Cols<SqliteRow>;

impl From<SqliteRow> for OwnedCols {
    fn from(row: SqliteRow) -> Self {
        Self(row)
    }
}

/// Columns whose stored type is the domain's.
macro_rules! native_columns {
    ($($name:ident: $ty:ty),* $(,)?) => {
        $(fn $name(&self, col: &str) -> StoreResult<$ty> {
            self.0.borrow().try_get(col).map_err(backend)
        })*
    };
}

impl<R: Borrow<SqliteRow>> StoredColumns for Cols<R> {
    native_columns!(
        text: String,
        opt_text: Option<String>,
        flag: bool,
        int: i32,
        opt_int: Option<i32>,
        big: i64,
        opt_big: Option<i64>,
        bytes: Vec<u8>,
        opt_bytes: Option<Vec<u8>>,
    );
    fn uuid(&self, col: &str) -> StoreResult<Uuid> {
        uuid(self.0.borrow(), col)
    }
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        match self.opt_text(col)? {
            None => Ok(None),
            Some(_) => self.uuid(col).map(Some),
        }
    }
    fn time(&self, col: &str) -> StoreResult<DateTime<Utc>> {
        time(self.0.borrow(), col)
    }
    fn opt_time(&self, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
        opt_time(self.0.borrow(), col)
    }
}
