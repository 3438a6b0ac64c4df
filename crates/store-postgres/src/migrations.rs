//! Embedded migrations. Numbered like their PostgreSQL twins; append-only.

use std::borrow::Cow;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "login_failures",
        include_str!("../migrations/0002_login_failures.sql"),
    ),
    (
        3,
        "audit_devices_cookies",
        include_str!("../migrations/0003_audit_devices_cookies.sql"),
    ),
    (
        4,
        "credential_epoch",
        include_str!("../migrations/0004_credential_epoch.sql"),
    ),
    (
        5,
        "webhooks",
        include_str!("../migrations/0005_webhooks.sql"),
    ),
    (6, "mfa", include_str!("../migrations/0006_mfa.sql")),
    (
        7,
        "email_confirmation",
        include_str!("../migrations/0007_email_confirmation.sql"),
    ),
    (
        8,
        "webhook_due_index",
        include_str!("../migrations/0008_webhook_due_index.sql"),
    ),
    (9, "rbac", include_str!("../migrations/0009_rbac.sql")),
    (
        10,
        "account_recovery",
        include_str!("../migrations/0010_account_recovery.sql"),
    ),
    (
        11,
        "session_device",
        include_str!("../migrations/0011_session_device.sql"),
    ),
    (
        12,
        "secure_storage",
        include_str!("../migrations/0012_secure_storage.sql"),
    ),
];

pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// The highest migration this binary knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}
