//! Helpers for tests: a fresh, empty database per test on a shared server.

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// Creates a new database with a random name on the server of `admin_url` and returns its URL.
///
/// # Errors
/// When the server cannot be reached or the database cannot be created.
pub async fn fresh_database(admin_url: &str) -> anyhow::Result<String> {
    let name = format!("porteiro_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(admin_url).await?;
    // The name is generated above from hex digits only, so it is safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(with_database(admin_url, &name))
}

/// Replaces the database name in a `postgres://` URL, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            super::with_database("postgres://u@h:1", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            super::with_database("postgres://u@h:1/db?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
    }
}
