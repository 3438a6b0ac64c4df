//! Row decoding into domain types.

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use porteiro_core::domain::mfa::decode_names;
use porteiro_core::domain::rbac::roles_from_column;
use porteiro_core::domain::webhook::StoredColumns;
use porteiro_core::domain::{Session, User};
use porteiro_core::store::StoreResult;
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::backend;

pub(crate) fn time(row: &PgRow, col: &str) -> StoreResult<DateTime<Utc>> {
    row.try_get(col).map_err(backend)
}

pub(crate) fn uuid(row: &PgRow, col: &str) -> StoreResult<Uuid> {
    row.try_get(col).map_err(backend)
}

pub(crate) fn user_from_row(r: &PgRow) -> StoreResult<User> {
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
        email_verified_at: r.try_get("email_verified_at").map_err(backend)?,
        failed_login_attempts: r.try_get("failed_login_attempts").map_err(backend)?,
        locked_until: r.try_get("locked_until").map_err(backend)?,
        locale: r.try_get("locale").map_err(backend)?,
        credential_epoch: r.try_get("credential_epoch").map_err(backend)?,
        login_alerts: r.try_get("login_alerts").map_err(backend)?,
        accept_messages: r.try_get("accept_messages").map_err(backend)?,
        password_reset_required: r.try_get("password_reset_required").map_err(backend)?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

pub(crate) fn session_from_row(r: &PgRow) -> StoreResult<Session> {
    Ok(Session {
        id: uuid(r, "id")?,
        user_id: uuid(r, "user_id")?,
        created_at: time(r, "created_at")?,
        last_active_at: time(r, "last_active_at")?,
        expires_at: time(r, "expires_at")?,
        revoked_at: r.try_get("revoked_at").map_err(backend)?,
        ip_address: r.try_get("ip_address").map_err(backend)?,
        user_agent: r.try_get("user_agent").map_err(backend)?,
        device_name: r.try_get("device_name").map_err(backend)?,
        device_type: r.try_get("device_type").map_err(backend)?,
        os: r.try_get("os").map_err(backend)?,
        browser: r.try_get("browser").map_err(backend)?,
        amr: decode_names(&r.try_get::<String, _>("amr").map_err(backend)?),
    })
}

/// A row seen through [`StoredColumns`]: every column has its native type.
pub(crate) struct Cols<R>(pub(crate) R);

/// An owned row, for [`porteiro_store_sql`]'s shared code.
pub(crate) type OwnedCols = Cols<PgRow>;

impl From<PgRow> for OwnedCols {
    fn from(row: PgRow) -> Self {
        Self(row)
    }
}

macro_rules! native_columns {
    ($($name:ident: $ty:ty),* $(,)?) => {
        impl<R: Borrow<PgRow>> StoredColumns for Cols<R> {
            $(fn $name(&self, col: &str) -> StoreResult<$ty> {
                self.0.borrow().try_get(col).map_err(backend)
            })*
        }
    };
}

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
    uuid: Uuid,
    opt_uuid: Option<Uuid>,
    time: DateTime<Utc>,
    opt_time: Option<DateTime<Utc>>,
);
