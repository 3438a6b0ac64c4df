//! Backups: the catalogue of every table and the portable stream format both backends write and
//! read.
//!
//! A backup is *logical*: rows with backend-neutral types ([`Type`]), so that one made on SQLite
//! restores on PostgreSQL and back. This module knows no driver: each backend reads and binds
//! the types its own way (`porteiro_store_sqlite::backup`, `porteiro_store_postgres::backup`)
//! and both share the catalogue, the [`Encoder`] that writes the stream and the [`Decoder`] that
//! checks it while it is read.
//!
//! The stream is JSON lines (before compression and encryption, which the caller adds):
//!
//! ```text
//! {"format":"porteiro-backup","format_version":1,"schema_version":12,...,"tables":[...]}
//! {"table":"users"}
//! ["0191…","alice",…]                      one JSON array per row, columns in header order
//! {"table_end":"users","rows":2,"sha256":"…"}   over the table's row lines
//! …
//! {"trailer":{"tables":31,"rows":1234,"sha256":"…"}}   over every byte before this line
//! ```
//!
//! Values: ids as UUID text, times as integer microseconds since the Unix epoch (SQLite keeps
//! milliseconds, so PostgreSQL → SQLite drops sub-millisecond digits), flags as `true`/`false`,
//! bytes as standard base64. Every column of the catalogue is written: encrypted columns stay as
//! the ciphertext they are in the database.
//!
//! Invariant: [`CATALOGUE`] lists every table and column of schema [`SCHEMA_VERSION`], parents
//! before children (foreign keys). Each backend compares it with the live schema before a
//! backup, and its tests fail when a migration adds a table or column the catalogue lacks.

use anyhow::{Context as _, bail, ensure};
use aws_lc_rs::digest;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The highest migration the catalogue describes. A backup is only taken from a database at
/// exactly this version.
pub const SCHEMA_VERSION: i64 = 12;

/// The version of the stream layout described in the module documentation.
pub const FORMAT_VERSION: u32 = 1;

/// The `format` field of every header.
pub const FORMAT_NAME: &str = "porteiro-backup";

/// Bytes of stream handed to the writer at a time.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Most bind parameters in one multi-row insert (SQLite allows 32766, PostgreSQL 65535).
const MAX_PARAMS: usize = 8000;

/// A column's type, the same on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    /// An id: UUID text on SQLite, `uuid` on PostgreSQL.
    Uuid,
    /// Text.
    Text,
    /// A time: Unix milliseconds on SQLite, `timestamptz` on PostgreSQL.
    Time,
    /// A flag: 0/1 on SQLite, `boolean` on PostgreSQL.
    Bool,
    /// An integer (`integer` or `bigint` on PostgreSQL).
    Int,
    /// Bytes: `blob` / `bytea`.
    Bytes,
}

/// A column of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// Whether it may be null.
    pub nullable: bool,
}

/// A table of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// Its columns, in the order the stream carries them.
    pub columns: &'static [Column],
    /// The column filled by an identity sequence (PostgreSQL) or `autoincrement` (SQLite),
    /// whose values are kept and whose sequence is moved past them after a restore.
    pub identity: Option<&'static str>,
}

const fn c(name: &'static str, ty: Type) -> Column {
    Column {
        name,
        ty,
        nullable: false,
    }
}

const fn n(name: &'static str, ty: Type) -> Column {
    Column {
        name,
        ty,
        nullable: true,
    }
}

use Type::{Bool, Bytes, Int, Text, Time};
const ID: Type = Type::Uuid;

/// Every table of schema [`SCHEMA_VERSION`], parents before children.
pub const CATALOGUE: &[Table] = &[
    Table {
        name: "users",
        identity: None,
        columns: &[
            c("id", ID),
            c("username", Text),
            c("username_key", Text),
            c("email", Text),
            n("first_name", Text),
            n("last_name", Text),
            c("password_hash", Text),
            c("is_active", Bool),
            c("email_verified", Bool),
            c("failed_login_attempts", Int),
            n("locked_until", Time),
            c("locale", Text),
            c("created_at", Time),
            c("updated_at", Time),
            c("credential_epoch", Int),
            n("email_verified_at", Time),
            c("question_failed_attempts", Int),
            n("question_locked_until", Time),
            c("login_alerts", Bool),
            c("password_reset_required", Bool),
            c("accept_messages", Bool),
        ],
    },
    Table {
        name: "sessions",
        identity: None,
        columns: &[
            c("id", ID),
            c("user_id", ID),
            c("last_active_at", Time),
            c("expires_at", Time),
            n("revoked_at", Time),
            n("revoke_reason", Text),
            n("ip_address", Text),
            n("user_agent", Text),
            c("device_name", Text),
            c("device_type", Text),
            n("os", Text),
            n("browser", Text),
            c("created_at", Time),
            c("updated_at", Time),
            n("cookie_hash", Text),
            c("amr", Text),
            n("device_key", Text),
        ],
    },
    Table {
        name: "refresh_tokens",
        identity: None,
        columns: &[
            c("token_hash", Text),
            c("session_id", ID),
            c("expires_at", Time),
            n("used_at", Time),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "password_reset_tokens",
        identity: None,
        columns: &[
            c("token_hash", Text),
            c("user_id", ID),
            c("expires_at", Time),
            n("used_at", Time),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "signing_keys",
        identity: None,
        columns: &[
            c("kid", Text),
            c("algorithm", Text),
            c("public_key", Bytes),
            c("private_key_enc", Bytes),
            c("created_at", Time),
            c("updated_at", Time),
            n("retired_at", Time),
        ],
    },
    Table {
        name: "mail_outbox",
        identity: None,
        columns: &[
            c("id", ID),
            n("payload", Bytes),
            c("status", Text),
            c("attempts", Int),
            c("next_attempt_at", Time),
            n("lease_until", Time),
            n("last_error", Text),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "login_failures",
        identity: None,
        columns: &[
            c("identifier_hash", Text),
            c("failed_login_attempts", Int),
            n("locked_until", Time),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "audit_events",
        identity: Some("id"),
        columns: &[
            c("id", Int),
            c("occurred_at", Time),
            c("event_type", Text),
            c("outcome", Text),
            n("user_id", ID),
            n("actor_id", ID),
            n("ip_address", Text),
            n("user_agent", Text),
            c("details", Text),
        ],
    },
    Table {
        name: "known_devices",
        identity: None,
        columns: &[
            c("user_id", ID),
            c("device_hash", Text),
            c("ip_address", Text),
            c("failed_login_attempts", Int),
            n("locked_until", Time),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "webhook_endpoints",
        identity: None,
        columns: &[
            c("id", ID),
            c("url", Text),
            c("description", Text),
            c("event_types", Text),
            c("enabled", Bool),
            c("secret_enc", Bytes),
            n("previous_secret_enc", Bytes),
            n("previous_secret_until", Time),
            n("failing_since", Time),
            n("disabled_reason", Text),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "webhook_deliveries",
        identity: Some("id"),
        columns: &[
            c("id", Int),
            c("endpoint_id", ID),
            c("event_id", Int),
            c("status", Text),
            c("attempts", Int),
            c("next_attempt_at", Time),
            n("last_attempt_at", Time),
            n("last_status_code", Int),
            n("last_latency_ms", Int),
            n("last_error", Text),
            c("created_at", Time),
            n("completed_at", Time),
        ],
    },
    Table {
        name: "totp_credentials",
        identity: None,
        columns: &[
            c("user_id", ID),
            c("secret_enc", Bytes),
            n("enabled_at", Time),
            n("last_step", Int),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "backup_codes",
        identity: None,
        columns: &[
            c("user_id", ID),
            c("code_hash", Text),
            n("used_at", Time),
            c("created_at", Time),
        ],
    },
    Table {
        name: "mfa_challenges",
        identity: None,
        columns: &[
            c("id", ID),
            c("token_hash", Text),
            c("user_id", ID),
            c("credential_epoch", Int),
            c("client_hash", Text),
            n("device_hash", Text),
            c("known_device", Bool),
            c("methods", Text),
            c("amr", Text),
            c("failed_attempts", Int),
            n("email_code_hash", Text),
            n("email_code_expires_at", Time),
            c("email_codes_sent", Int),
            n("email_last_sent_at", Time),
            c("expires_at", Time),
            n("consumed_at", Time),
            c("created_at", Time),
        ],
    },
    Table {
        name: "email_confirmation_tokens",
        identity: None,
        columns: &[
            c("token_hash", Text),
            c("user_id", ID),
            c("email", Text),
            c("expires_at", Time),
            n("used_at", Time),
            c("created_at", Time),
        ],
    },
    Table {
        name: "permissions",
        identity: None,
        columns: &[
            c("id", ID),
            c("name", Text),
            c("description", Text),
            c("builtin", Bool),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "roles",
        identity: None,
        columns: &[
            c("id", ID),
            c("name", Text),
            c("description", Text),
            c("builtin", Bool),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "role_permissions",
        identity: None,
        columns: &[
            c("role_id", ID),
            c("permission_id", ID),
            c("created_at", Time),
        ],
    },
    Table {
        name: "user_roles",
        identity: None,
        columns: &[c("user_id", ID), c("role_id", ID), c("created_at", Time)],
    },
    Table {
        name: "recovery_emails",
        identity: None,
        columns: &[
            c("id", ID),
            c("user_id", ID),
            c("email", Text),
            n("verified_at", Time),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "recovery_email_tokens",
        identity: None,
        columns: &[
            c("token_hash", Text),
            c("recovery_email_id", ID),
            c("expires_at", Time),
            n("used_at", Time),
            c("created_at", Time),
        ],
    },
    Table {
        name: "security_questions",
        identity: None,
        columns: &[
            c("id", ID),
            c("question", Text),
            c("is_active", Bool),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "user_security_answers",
        identity: None,
        columns: &[
            c("user_id", ID),
            c("question_id", ID),
            c("answer_hash", Text),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "recovery_proofs",
        identity: None,
        columns: &[
            c("token_hash", Text),
            c("user_id", ID),
            c("expires_at", Time),
            n("used_at", Time),
            c("created_at", Time),
        ],
    },
    Table {
        name: "sign_in_devices",
        identity: None,
        columns: &[
            c("user_id", ID),
            c("device_key", Text),
            c("first_seen_at", Time),
            c("last_seen_at", Time),
        ],
    },
    Table {
        name: "sign_in_alerts",
        identity: None,
        columns: &[
            c("token_hash", Text),
            c("user_id", ID),
            c("session_id", ID),
            c("expires_at", Time),
            n("used_at", Time),
            c("created_at", Time),
        ],
    },
    Table {
        name: "key_encryption_keys",
        identity: None,
        columns: &[
            c("version", Int),
            c("algorithm", Text),
            c("public_key", Bytes),
            n("private_key_enc", Bytes),
            c("created_at", Time),
            n("retired_at", Time),
        ],
    },
    Table {
        name: "data_keys",
        identity: None,
        columns: &[
            c("id", ID),
            n("owner_id", ID),
            c("kek_version", Int),
            c("wrapped_key", Bytes),
            c("created_at", Time),
            c("updated_at", Time),
        ],
    },
    Table {
        name: "destroyed_data_keys",
        identity: None,
        columns: &[c("id", ID), n("owner_id", ID), c("destroyed_at", Time)],
    },
    Table {
        name: "messages",
        identity: None,
        columns: &[
            c("id", ID),
            n("sender_id", ID),
            n("recipient_id", ID),
            n("sender_key", Bytes),
            n("recipient_key", Bytes),
            c("content", Bytes),
            n("read_at", Time),
            c("created_at", Time),
        ],
    },
];

/// Tables the migrations fill by themselves (the built-in roles and permissions): they do not
/// make a database "non-empty", and a restore replaces them like any other.
pub const SEEDED_TABLES: &[&str] = &["permissions", "roles", "role_permissions"];

/// A column as the live database describes it, for [`catalogue_mismatches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveColumn {
    /// Table name.
    pub table: String,
    /// Column name.
    pub column: String,
    /// The backend's type mapped to ours (`None`: a type the catalogue cannot carry).
    pub ty: Option<Type>,
    /// Whether it may be null.
    pub nullable: bool,
}

/// How the live schema differs from [`CATALOGUE`]: tables or columns the catalogue does not know
/// (a backup would silently miss them), ones it expects but the database lacks, and types or
/// nullability that differ. `compatible` tells whether a live column can carry the catalogue's
/// type (SQLite's `integer` carries flags, times and integers alike).
#[must_use]
pub fn catalogue_mismatches(
    live: &[LiveColumn],
    compatible: impl Fn(Type, &LiveColumn) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for l in live {
        match table(&l.table) {
            None => problems.push(format!("table {} is not in the backup catalogue", l.table)),
            Some(t) => match t.columns.iter().find(|c| c.name == l.column) {
                None => problems.push(format!(
                    "column {}.{} is not in the backup catalogue",
                    l.table, l.column
                )),
                Some(col) => {
                    if !compatible(col.ty, l) {
                        problems.push(format!(
                            "column {}.{}: the catalogue says {:?}, the database {:?}",
                            l.table, l.column, col.ty, l.ty
                        ));
                    }
                    if col.nullable != l.nullable {
                        problems.push(format!(
                            "column {}.{}: the catalogue says nullable={}, the database {}",
                            l.table, l.column, col.nullable, l.nullable
                        ));
                    }
                }
            },
        }
    }
    for t in CATALOGUE {
        for col in t.columns {
            if !live
                .iter()
                .any(|l| l.table == t.name && l.column == col.name)
            {
                problems.push(format!(
                    "column {}.{} of the backup catalogue is not in the database",
                    t.name, col.name
                ));
            }
        }
    }
    problems.dedup();
    problems
}

/// The catalogue entry of `name`.
#[must_use]
pub fn table(name: &str) -> Option<&'static Table> {
    CATALOGUE.iter().find(|t| t.name == name)
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL null.
    Null,
    /// An id.
    Uuid(Uuid),
    /// Text.
    Text(String),
    /// Microseconds since the Unix epoch.
    Time(i64),
    /// A flag.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// A table as a backup header describes it: the columns the stream carries for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Table name.
    pub name: String,
    /// Its columns, in stream order.
    pub columns: Vec<ColumnSpec>,
    /// The identity column, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// A column as a backup header describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: Type,
    /// Whether it may be null.
    pub nullable: bool,
}

impl From<&Table> for TableSpec {
    fn from(t: &Table) -> Self {
        Self {
            name: t.name.to_owned(),
            columns: t
                .columns
                .iter()
                .map(|c| ColumnSpec {
                    name: c.name.to_owned(),
                    ty: c.ty,
                    nullable: c.nullable,
                })
                .collect(),
            identity: t.identity.map(ToOwned::to_owned),
        }
    }
}

impl TableSpec {
    /// `select a, b, c from t`, each column through `wrap` (a backend may cast).
    #[must_use]
    pub fn select_sql(&self, wrap: impl Fn(&ColumnSpec) -> String) -> String {
        let cols: Vec<String> = self.columns.iter().map(wrap).collect();
        format!("select {} from {}", cols.join(", "), self.name)
    }

    /// Rows per multi-row insert of at most `max_params` parameters.
    #[must_use]
    pub fn batch_rows(&self, max_params: usize) -> usize {
        (max_params.min(MAX_PARAMS) / self.columns.len().max(1)).clamp(1, 1000)
    }

    /// `insert into t (a, b) <overriding> values ($1, $2), ($3, $4), …` for `rows` rows.
    #[must_use]
    pub fn insert_sql(&self, rows: usize, overriding: &str) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        let width = self.columns.len();
        let mut sql = format!(
            "insert into {} ({}) {overriding} values ",
            self.name,
            names.join(", ")
        );
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for i in 0..width {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&(r * width + i + 1).to_string());
            }
            sql.push(')');
        }
        sql
    }
}

/// The first line of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The highest migration applied to the database it was taken from.
    pub schema_version: i64,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// `sqlite` or `postgres`.
    pub source: String,
    /// The tables, in the order the stream carries them (parents first).
    pub tables: Vec<TableSpec>,
}

impl Header {
    /// The header of a backup of the current catalogue.
    #[must_use]
    pub fn current(source: &str, created_at: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            format: FORMAT_NAME.to_owned(),
            format_version: FORMAT_VERSION,
            schema_version: SCHEMA_VERSION,
            created_at: created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            source: source.to_owned(),
            tables: CATALOGUE.iter().map(TableSpec::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TableStart {
    table: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableEnd {
    table_end: String,
    rows: u64,
    sha256: String,
}

/// What a trailer records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Tables in the backup.
    pub tables: u64,
    /// Rows in all tables.
    pub rows: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TrailerBody {
    tables: u64,
    rows: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Trailer {
    trailer: TrailerBody,
}

fn hex(d: digest::Digest) -> String {
    use std::fmt::Write as _;
    d.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha() -> digest::Context {
    digest::Context::new(&digest::SHA256)
}

/// Writes a backup stream. Callers take finished chunks with [`Encoder::take_chunk`] as they go,
/// so the stream never sits in memory whole.
pub struct Encoder {
    buf: Vec<u8>,
    all: digest::Context,
    table: Option<(String, digest::Context, u64)>,
    totals: Totals,
    bytes: u64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Starts a stream with `header`.
    ///
    /// # Errors
    /// Never in practice (serialising plain data).
    pub fn new(header: &Header) -> anyhow::Result<Self> {
        let mut e = Self {
            buf: Vec::with_capacity(CHUNK_BYTES * 2),
            all: sha(),
            table: None,
            totals: Totals::default(),
            bytes: 0,
        };
        e.object(header)?;
        Ok(e)
    }

    fn object<T: Serialize>(&mut self, v: &T) -> anyhow::Result<()> {
        let start = self.buf.len();
        serde_json::to_writer(&mut self.buf, v)?;
        self.buf.push(b'\n');
        self.all.update(&self.buf[start..]);
        Ok(())
    }

    /// Starts the rows of `table`.
    ///
    /// # Errors
    /// When a table is already open.
    pub fn begin_table(&mut self, table: &str) -> anyhow::Result<()> {
        ensure!(self.table.is_none(), "table {table} started inside another");
        self.object(&TableStart {
            table: table.to_owned(),
        })?;
        self.table = Some((table.to_owned(), sha(), 0));
        Ok(())
    }

    /// Appends one row.
    ///
    /// # Errors
    /// When no table is open.
    pub fn row(&mut self, values: &[Value]) -> anyhow::Result<()> {
        let start = self.buf.len();
        self.buf.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            match v {
                Value::Null => self.buf.extend_from_slice(b"null"),
                Value::Uuid(u) => {
                    self.buf.push(b'"');
                    let mut tmp = Uuid::encode_buffer();
                    self.buf
                        .extend_from_slice(u.hyphenated().encode_lower(&mut tmp).as_bytes());
                    self.buf.push(b'"');
                }
                Value::Text(t) => serde_json::to_writer(&mut self.buf, t)?,
                Value::Time(t) | Value::Int(t) => {
                    self.buf.extend_from_slice(t.to_string().as_bytes());
                }
                Value::Bool(b) => self
                    .buf
                    .extend_from_slice(if *b { b"true" } else { b"false" }),
                Value::Bytes(b) => {
                    self.buf.push(b'"');
                    let at = self.buf.len();
                    self.buf
                        .resize(at + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
                    let written = base64::engine::general_purpose::STANDARD
                        .encode_slice(b, &mut self.buf[at..])
                        .context("encoding bytes")?;
                    self.buf.truncate(at + written);
                    self.buf.push(b'"');
                }
            }
        }
        self.buf.extend_from_slice(b"]\n");
        let line = &self.buf[start..];
        self.all.update(line);
        let (_, digest, rows) = self.table.as_mut().context("a row outside any table")?;
        digest.update(line);
        *rows += 1;
        self.totals.rows += 1;
        Ok(())
    }

    /// Ends the open table, recording its row count and checksum. Returns its row count.
    ///
    /// # Errors
    /// When no table is open.
    pub fn end_table(&mut self) -> anyhow::Result<u64> {
        let (name, digest, rows) = self.table.take().context("no table to end")?;
        self.object(&TableEnd {
            table_end: name,
            rows,
            sha256: hex(digest.finish()),
        })?;
        self.totals.tables += 1;
        Ok(rows)
    }

    /// The buffered bytes, once there are at least [`CHUNK_BYTES`] of them.
    pub fn take_chunk(&mut self) -> Option<Vec<u8>> {
        (self.buf.len() >= CHUNK_BYTES).then(|| self.take())
    }

    fn take(&mut self) -> Vec<u8> {
        let out = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES * 2));
        self.bytes += out.len() as u64;
        out
    }

    /// Rows so far, and stream bytes handed out so far.
    #[must_use]
    pub fn progress(&self) -> (u64, u64) {
        (self.totals.rows, self.bytes)
    }

    /// Writes the trailer and returns the last bytes with the totals.
    ///
    /// # Errors
    /// When a table is still open.
    pub fn finish(mut self) -> anyhow::Result<(Vec<u8>, Totals, u64)> {
        ensure!(self.table.is_none(), "the backup ended inside a table");
        let all = std::mem::replace(&mut self.all, sha());
        let trailer = Trailer {
            trailer: TrailerBody {
                tables: self.totals.tables,
                rows: self.totals.rows,
                sha256: hex(all.finish()),
            },
        };
        serde_json::to_writer(&mut self.buf, &trailer)?;
        self.buf.push(b'\n');
        let totals = self.totals;
        let last = self.take();
        Ok((last, totals, self.bytes))
    }
}

/// One line of a backup, as the [`Decoder`] checked it.
#[derive(Debug)]
pub enum Item {
    /// The header (first line).
    Header(Header),
    /// The rows of the header's table at this index follow.
    Table(usize),
    /// A row of the open table, its values typed by the header.
    Row(Vec<Value>),
    /// The open table ended; its count and checksum matched.
    TableEnd(usize),
    /// The trailer; every count and checksum matched. Nothing may follow.
    Trailer(Totals),
}

enum State {
    Start,
    Between {
        next: usize,
    },
    InTable {
        index: usize,
        digest: digest::Context,
        rows: u64,
    },
    Done,
}

/// Reads a backup stream line by line and checks it: the header's format and versions, that
/// tables come in the header's order, each row's shape and types, each table's count and
/// checksum, and the trailer's totals and checksum. A restore commits only after
/// [`Decoder::finished`].
pub struct Decoder {
    state: State,
    header: Option<Header>,
    all: digest::Context,
    totals: Totals,
    max_schema: i64,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder that refuses backups newer than schema version `max_schema` (the binary's).
    #[must_use]
    pub fn new(max_schema: i64) -> Self {
        Self {
            state: State::Start,
            header: None,
            all: sha(),
            totals: Totals::default(),
            max_schema,
        }
    }

    /// The header, once read.
    #[must_use]
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Whether the trailer was read and checked.
    #[must_use]
    pub fn finished(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Rows checked so far.
    #[must_use]
    pub fn rows(&self) -> u64 {
        self.totals.rows
    }

    /// Checks one line (with or without its `\n`).
    ///
    /// # Errors
    /// A message saying what is wrong with the backup.
    pub fn feed(&mut self, line: &[u8]) -> anyhow::Result<Item> {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let state = std::mem::replace(&mut self.state, State::Done);
        match state {
            State::Start => {
                let header: Header = serde_json::from_slice(body)
                    .context("this is not a Porteiro backup (no valid header)")?;
                ensure!(
                    header.format == FORMAT_NAME,
                    "this is not a Porteiro backup (format {:?})",
                    header.format
                );
                ensure!(
                    header.format_version <= FORMAT_VERSION,
                    "the backup uses format version {}, newer than this Porteiro reads ({FORMAT_VERSION}): restore it with a newer release",
                    header.format_version
                );
                ensure!(
                    header.schema_version <= self.max_schema,
                    "the backup has schema version {}, newer than this Porteiro knows ({}): restore it with a newer release",
                    header.schema_version,
                    self.max_schema
                );
                for t in &header.tables {
                    ensure!(
                        is_identifier(&t.name) && t.columns.iter().all(|c| is_identifier(&c.name)),
                        "the backup header names an invalid table or column"
                    );
                    ensure!(!t.columns.is_empty(), "table {} has no columns", t.name);
                }
                self.all.update(line_with_newline(line).as_ref());
                self.header = Some(header.clone());
                self.state = State::Between { next: 0 };
                Ok(Item::Header(header))
            }
            State::Between { next } => {
                let header = self.header.as_ref().context("no header")?;
                if let Ok(start) = serde_json::from_slice::<TableStart>(body) {
                    let expected = header.tables.get(next).with_context(|| {
                        format!("the backup is corrupted: unexpected table {}", start.table)
                    })?;
                    ensure!(
                        expected.name == start.table,
                        "the backup is corrupted: table {} where {} was expected",
                        start.table,
                        expected.name
                    );
                    self.all.update(line_with_newline(line).as_ref());
                    self.state = State::InTable {
                        index: next,
                        digest: sha(),
                        rows: 0,
                    };
                    return Ok(Item::Table(next));
                }
                let trailer: Trailer = serde_json::from_slice(body)
                    .context("the backup is corrupted: a line between tables is neither a table nor the trailer")?;
                ensure!(
                    next == header.tables.len(),
                    "the backup is incomplete: it ends after {next} of {} tables",
                    header.tables.len()
                );
                let all = std::mem::replace(&mut self.all, sha());
                ensure!(
                    hex(all.finish()) == trailer.trailer.sha256,
                    "the backup is corrupted: the overall checksum does not match"
                );
                ensure!(
                    trailer.trailer.tables == next as u64
                        && trailer.trailer.rows == self.totals.rows,
                    "the backup is corrupted: the trailer counts {} tables and {} rows, the stream {} and {}",
                    trailer.trailer.tables,
                    trailer.trailer.rows,
                    next,
                    self.totals.rows
                );
                self.totals.tables = next as u64;
                self.state = State::Done;
                Ok(Item::Trailer(self.totals))
            }
            State::InTable {
                index,
                mut digest,
                rows,
            } => {
                let header = self.header.as_ref().context("no header")?;
                let spec = &header.tables[index];
                if body.first() == Some(&b'[') {
                    let values = parse_row(spec, body)?;
                    let full = line_with_newline(line);
                    digest.update(full.as_ref());
                    self.all.update(full.as_ref());
                    self.totals.rows += 1;
                    self.state = State::InTable {
                        index,
                        digest,
                        rows: rows + 1,
                    };
                    return Ok(Item::Row(values));
                }
                let end: TableEnd = serde_json::from_slice(body).with_context(|| {
                    format!(
                        "the backup is corrupted: a malformed line in table {}",
                        spec.name
                    )
                })?;
                ensure!(
                    end.table_end == spec.name,
                    "the backup is corrupted: table {} ends as {}",
                    spec.name,
                    end.table_end
                );
                ensure!(
                    end.rows == rows,
                    "the backup is corrupted: table {} should have {} rows, it has {rows}",
                    spec.name,
                    end.rows
                );
                ensure!(
                    hex(digest.finish()) == end.sha256,
                    "the backup is corrupted: the checksum of table {} does not match",
                    spec.name
                );
                self.all.update(line_with_newline(line).as_ref());
                self.state = State::Between { next: index + 1 };
                Ok(Item::TableEnd(index))
            }
            State::Done => bail!("the backup is corrupted: data after the trailer"),
        }
    }
}

fn line_with_newline(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if line.ends_with(b"\n") {
        std::borrow::Cow::Borrowed(line)
    } else {
        let mut v = line.to_vec();
        v.push(b'\n');
        std::borrow::Cow::Owned(v)
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

fn parse_row(spec: &TableSpec, body: &[u8]) -> anyhow::Result<Vec<Value>> {
    let raw: Vec<serde_json::Value> = serde_json::from_slice(body).with_context(|| {
        format!(
            "the backup is corrupted: a malformed row in table {}",
            spec.name
        )
    })?;
    ensure!(
        raw.len() == spec.columns.len(),
        "the backup is corrupted: a row of table {} has {} values, not {}",
        spec.name,
        raw.len(),
        spec.columns.len()
    );
    raw.into_iter()
        .zip(&spec.columns)
        .map(|(v, col)| {
            typed(v, col.ty, col.nullable).with_context(|| {
                format!(
                    "the backup is corrupted: a bad value in column {}.{}",
                    spec.name, col.name
                )
            })
        })
        .collect()
}

fn typed(v: serde_json::Value, ty: Type, nullable: bool) -> anyhow::Result<Value> {
    use serde_json::Value as J;
    Ok(match (ty, v) {
        (_, J::Null) => {
            ensure!(nullable, "null in a non-null column");
            Value::Null
        }
        (Type::Uuid, J::String(s)) => Value::Uuid(Uuid::parse_str(&s)?),
        (Type::Text, J::String(s)) => Value::Text(s),
        (Type::Time, J::Number(n)) => Value::Time(n.as_i64().context("not an integer")?),
        (Type::Int, J::Number(n)) => Value::Int(n.as_i64().context("not an integer")?),
        (Type::Bool, J::Bool(b)) => Value::Bool(b),
        (Type::Bytes, J::String(s)) => {
            Value::Bytes(base64::engine::general_purpose::STANDARD.decode(s)?)
        }
        (ty, other) => bail!("{other} is not a {ty:?}"),
    })
}

/// How far a backup or restore got, for progress reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Rows so far.
    pub rows: u64,
    /// Stream bytes (before compression) so far.
    pub bytes: u64,
}

/// A progress callback.
pub type OnProgress<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// What a restore does besides loading the rows.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    /// Replace the contents of a non-empty database.
    pub force: bool,
    /// Keep the restored sessions usable (by default every session is revoked).
    pub keep_sessions: bool,
}

/// What a finished restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// The backup's header.
    pub schema_version: i64,
    /// Where the backup came from.
    pub source: String,
    /// When it was taken.
    pub created_at: String,
    /// Tables and rows loaded.
    pub totals: Totals,
    /// Stream bytes read.
    pub bytes: u64,
    /// Sessions revoked.
    pub sessions_revoked: u64,
    /// Data keys removed because the destroyed-key record names them.
    pub data_keys_shredded: u64,
}

/// Chunks of stream bytes, each made of whole lines, or the reason reading stopped.
pub type Chunk = Result<Vec<u8>, String>;

/// A restore target: inserts checked rows in its open transaction.
#[async_trait::async_trait]
pub trait Loader: Send {
    /// Inserts `rows` of `table`.
    async fn insert(&mut self, table: &TableSpec, rows: &[Vec<Value>]) -> anyhow::Result<()>;

    /// Most bind parameters per insert that suit this backend.
    fn max_params(&self) -> usize {
        MAX_PARAMS
    }
}

/// Reads the header: the first line of the first chunk. Returns it with the decoder that checked
/// it and the rest of that chunk.
///
/// # Errors
/// When the stream ends first or the header is invalid.
pub async fn read_header(
    input: &mut tokio::sync::mpsc::Receiver<Chunk>,
    max_schema: i64,
) -> anyhow::Result<(Header, Decoder, Vec<u8>)> {
    let mut pending = Vec::new();
    loop {
        if let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let rest = pending.split_off(end + 1);
            let mut decoder = Decoder::new(max_schema);
            let Item::Header(h) = decoder.feed(&pending)? else {
                bail!("this is not a Porteiro backup");
            };
            return Ok((h, decoder, rest));
        }
        match input.recv().await {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            Some(Err(e)) => bail!("{e}"),
            None => bail!("this is not a Porteiro backup (it is empty or has no header)"),
        }
        ensure!(
            pending.len() < 16 * 1024 * 1024,
            "this is not a Porteiro backup (no header line)"
        );
    }
}

/// Checks and loads every table after the header into `loader`, in batches. Returns only once
/// the trailer checked out: until then the caller must not commit.
///
/// # Errors
/// A damaged, truncated or inconsistent stream, or a failed insert.
pub async fn load(
    decoder: &mut Decoder,
    first: Vec<u8>,
    input: &mut tokio::sync::mpsc::Receiver<Chunk>,
    loader: &mut dyn Loader,
    on_progress: OnProgress<'_>,
) -> anyhow::Result<(Totals, u64)> {
    let header = decoder.header().context("no header")?.clone();
    let mut batch: Vec<Vec<Value>> = Vec::new();
    let mut current: Option<usize> = None;
    let mut bytes = 0u64;
    let mut chunk = first;
    let mut totals = None;
    loop {
        let mut at = 0;
        while let Some(len) = chunk[at..].iter().position(|b| *b == b'\n') {
            let line = &chunk[at..=at + len];
            at += len + 1;
            bytes += line.len() as u64;
            match decoder.feed(line)? {
                Item::Header(_) => bail!("the backup is corrupted: a second header"),
                Item::Table(i) => current = Some(i),
                Item::Row(values) => {
                    batch.push(values);
                    let spec = &header.tables[current.context("a row outside any table")?];
                    if batch.len() >= spec.batch_rows(loader.max_params()) {
                        loader.insert(spec, &batch).await?;
                        batch.clear();
                    }
                }
                Item::TableEnd(i) => {
                    if !batch.is_empty() {
                        loader.insert(&header.tables[i], &batch).await?;
                        batch.clear();
                    }
                    current = None;
                    on_progress(Progress {
                        rows: decoder.rows(),
                        bytes,
                    });
                }
                Item::Trailer(t) => totals = Some(t),
            }
        }
        ensure!(
            at == chunk.len(),
            "the backup is truncated: it ends in the middle of a line"
        );
        on_progress(Progress {
            rows: decoder.rows(),
            bytes,
        });
        match input.recv().await {
            Some(Ok(next)) => chunk = next,
            Some(Err(e)) => bail!("{e}"),
            None => break,
        }
    }
    match totals {
        Some(t) if decoder.finished() => Ok((t, bytes)),
        _ => bail!("the backup is truncated: it ends before its trailer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_of(spec: &TableSpec) -> Vec<Value> {
        spec.columns
            .iter()
            .map(|col| match col.ty {
                Type::Uuid => Value::Uuid(Uuid::nil()),
                Type::Text => Value::Text("a \"b\"\n".into()),
                Type::Time => Value::Time(1_700_000_000_123_456),
                Type::Bool => Value::Bool(true),
                Type::Int => Value::Int(-7),
                Type::Bytes => Value::Bytes(vec![0, 255]),
            })
            .collect()
    }

    fn sample() -> Vec<u8> {
        let mut header = Header::current("sqlite", chrono::DateTime::UNIX_EPOCH);
        header.tables = ["users", "signing_keys"]
            .iter()
            .map(|t| TableSpec::from(table(t).expect("table")))
            .collect();
        let mut e = Encoder::new(&header).expect("header");
        for spec in &header.tables {
            e.begin_table(&spec.name).expect("begin");
            e.row(&row_of(spec)).expect("row");
            e.end_table().expect("end");
        }
        let (last, totals, _) = e.finish().expect("finish");
        assert_eq!(totals, Totals { tables: 2, rows: 2 });
        last
    }

    fn check(stream: &[u8]) -> anyhow::Result<Vec<Item>> {
        let mut d = Decoder::new(SCHEMA_VERSION);
        let mut items = Vec::new();
        for line in stream.split_inclusive(|b| *b == b'\n') {
            items.push(d.feed(line)?);
        }
        ensure!(d.finished(), "truncated");
        Ok(items)
    }

    #[test]
    fn a_stream_round_trips_through_the_decoder() {
        let items = check(&sample()).expect("valid");
        assert!(matches!(
            items.last(),
            Some(Item::Trailer(Totals { tables: 2, rows: 2 }))
        ));
        let Item::Row(users) = &items[2] else {
            panic!("row expected")
        };
        assert_eq!(users[0], Value::Uuid(Uuid::nil()));
        assert!(users.contains(&Value::Text("a \"b\"\n".into())));
        assert!(users.contains(&Value::Time(1_700_000_000_123_456)));
        let Item::Row(keys) = &items[5] else {
            panic!("row expected")
        };
        assert!(keys.contains(&Value::Bytes(vec![0, 255])));
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let good = sample();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(check(&bad).is_err(), "byte {i} changed and still accepted");
        }
    }

    #[test]
    fn a_truncated_stream_is_refused() {
        let good = sample();
        let lines: Vec<&[u8]> = good.split_inclusive(|b| *b == b'\n').collect();
        for keep in 0..lines.len() {
            assert!(check(&lines[..keep].concat()).is_err());
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let good = sample();
        let mut d = Decoder::new(SCHEMA_VERSION - 1);
        let first = good
            .split_inclusive(|b| *b == b'\n')
            .next()
            .expect("header");
        let e = d.feed(first).expect_err("newer");
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn insert_statements_number_their_parameters() {
        let spec = TableSpec::from(table("user_roles").expect("table"));
        assert_eq!(
            spec.insert_sql(2, ""),
            "insert into user_roles (user_id, role_id, created_at)  values ($1, $2, $3), ($4, $5, $6)"
        );
    }
}
