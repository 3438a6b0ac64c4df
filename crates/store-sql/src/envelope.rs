//! Key-encryption keys and data keys ([`EnvelopeStore`]), for both backends.
//!
//! [`EnvelopeStore`]: porteiro_core::store::EnvelopeStore

use chrono::{DateTime, Utc};
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::webhook::StoredColumns;
use porteiro_core::store::{SealedColumn, SealedValue, StoreResult, StoredDataKey, StoredKek};
use uuid::Uuid;

use crate::{Arg, SqlDb, SqlTx, commit_if};

const KEKS: &str = "select version, algorithm, public_key, private_key_enc, created_at, retired_at \
     from key_encryption_keys order by version desc";

const INSERT_KEK: &str = "insert into key_encryption_keys \
       (version, algorithm, public_key, private_key_enc, created_at) values ($1, $2, $3, $4, $5) \
     on conflict (version) do nothing";

/// Retires version `$1` at `$2` unless it is the newest or still wraps a data key.
const RETIRE_KEK: &str = "update key_encryption_keys set retired_at = $2, private_key_enc = null \
     where version = $1 and retired_at is null \
       and version < (select max(version) from key_encryption_keys) \
       and not exists (select 1 from data_keys where kek_version = $1)";

const DATA_KEY_COLUMNS: &str = "id, owner_id, kek_version, wrapped_key";

/// Adds a data key wrapped by version `$3`, unless that version was retired meanwhile (its
/// private half is gone: the key could never be unwrapped) or the owner has a key already.
const INSERT_DATA_KEY: &str = "insert into data_keys \
       (id, owner_id, kek_version, wrapped_key, created_at, updated_at) \
     select $1, $2, $3, $4, $5, $5 \
     where exists (select 1 from key_encryption_keys where version = $3 and retired_at is null) \
     on conflict do nothing";

/// Re-wraps key `$1` from version `$2` to `$3`, unless it changed meanwhile or `$3` was retired.
const REWRAP: &str = "update data_keys set kek_version = $3, wrapped_key = $4, updated_at = $5 \
     where id = $1 and kek_version = $2 \
       and exists (select 1 from key_encryption_keys where version = $3 and retired_at is null)";

const COUNTS: &str =
    "select kek_version, count(*) as n from data_keys group by kek_version order by kek_version";

const DESTROYED: &str = "select count(*) as n from destroyed_data_keys";

fn kek(r: &dyn StoredColumns) -> StoreResult<StoredKek> {
    Ok(StoredKek {
        version: r.int("version")?,
        algorithm: r.text("algorithm")?,
        public_key: r.bytes("public_key")?,
        private_key_enc: r.opt_bytes("private_key_enc")?,
        created_at: r.time("created_at")?,
        retired_at: r.opt_time("retired_at")?,
    })
}

fn data_key(r: &dyn StoredColumns) -> StoreResult<StoredDataKey> {
    Ok(StoredDataKey {
        id: r.uuid("id")?,
        owner_id: r.opt_uuid("owner_id")?,
        kek_version: r.int("kek_version")?,
        wrapped_key: r.bytes("wrapped_key")?,
    })
}

/// [`porteiro_core::store::EnvelopeStore::key_encryption_keys`].
///
/// # Errors
/// On store failure.
pub async fn keks(db: &dyn SqlDb) -> StoreResult<Vec<StoredKek>> {
    db.read(KEKS, &[])
        .await?
        .iter()
        .map(|r| kek(r.as_ref()))
        .collect()
}

/// [`porteiro_core::store::EnvelopeStore::insert_key_encryption_key`].
///
/// # Errors
/// On store failure.
pub async fn insert_kek(
    db: &dyn SqlDb,
    k: &StoredKek,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    let mut tx = db.begin(false).await?;
    let added = tx
        .execute(
            INSERT_KEK,
            &[
                Arg::Int(i64::from(k.version)),
                Arg::Text(&k.algorithm),
                Arg::Bytes(&k.public_key),
                Arg::OptBytes(k.private_key_enc.as_deref()),
                Arg::Time(k.created_at),
            ],
        )
        .await?
        == 1;
    commit_if(tx, added, events).await
}

/// [`porteiro_core::store::EnvelopeStore::retire_key_encryption_key`].
///
/// # Errors
/// On store failure.
pub async fn retire_kek(
    db: &dyn SqlDb,
    version: i32,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    // Serialised with data-key inserts and re-wraps, which check the version is not retired.
    let mut tx = db.begin(true).await?;
    let retired = tx
        .execute(RETIRE_KEK, &[Arg::Int(i64::from(version)), Arg::Time(now)])
        .await?
        == 1;
    commit_if(tx, retired, events).await
}

/// [`porteiro_core::store::EnvelopeStore::data_key_of`].
///
/// # Errors
/// On store failure.
pub async fn data_key_of(
    db: &dyn SqlDb,
    owner: Option<Uuid>,
) -> StoreResult<Option<StoredDataKey>> {
    let rows = match owner {
        Some(id) => {
            db.read(
                &format!("select {DATA_KEY_COLUMNS} from data_keys where owner_id = $1"),
                &[Arg::Uuid(id)],
            )
            .await?
        }
        None => {
            db.read(
                &format!(
                    "select {DATA_KEY_COLUMNS} from data_keys where id = $1 and owner_id is null"
                ),
                &[Arg::Uuid(porteiro_core::envelope::DEPLOYMENT_KEY_ID)],
            )
            .await?
        }
    };
    rows.first().map(|r| data_key(r.as_ref())).transpose()
}

/// [`porteiro_core::store::EnvelopeStore::insert_data_key`].
///
/// # Errors
/// On store failure.
pub async fn insert_data_key(
    db: &dyn SqlDb,
    k: &StoredDataKey,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    // Serialised with retirements (PostgreSQL advisory lock; SQLite's single writer), so a key
    // is never added under a version that a concurrent retirement erases.
    let mut tx = db.begin(true).await?;
    let added = tx
        .execute(
            INSERT_DATA_KEY,
            &[
                Arg::Uuid(k.id),
                Arg::OptUuid(k.owner_id),
                Arg::Int(i64::from(k.kek_version)),
                Arg::Bytes(&k.wrapped_key),
                Arg::Time(now),
            ],
        )
        .await?
        == 1;
    tx.commit().await?;
    Ok(added)
}

/// [`porteiro_core::store::EnvelopeStore::data_keys_to_rewrap`].
///
/// # Errors
/// On store failure.
pub async fn to_rewrap(
    db: &dyn SqlDb,
    current: i32,
    limit: u32,
) -> StoreResult<Vec<StoredDataKey>> {
    db.read(
        &format!(
            "select {DATA_KEY_COLUMNS} from data_keys where kek_version <> $1 \
             order by kek_version, id limit $2"
        ),
        &[Arg::Int(i64::from(current)), Arg::Int(i64::from(limit))],
    )
    .await?
    .iter()
    .map(|r| data_key(r.as_ref()))
    .collect()
}

/// [`porteiro_core::store::EnvelopeStore::rewrap_data_key`].
///
/// # Errors
/// On store failure.
pub async fn rewrap(
    db: &dyn SqlDb,
    id: Uuid,
    from: i32,
    to: i32,
    wrapped: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut tx = db.begin(true).await?;
    let changed = tx
        .execute(
            REWRAP,
            &[
                Arg::Uuid(id),
                Arg::Int(i64::from(from)),
                Arg::Int(i64::from(to)),
                Arg::Bytes(wrapped),
                Arg::Time(now),
            ],
        )
        .await?
        == 1;
    tx.commit().await?;
    Ok(changed)
}

/// [`porteiro_core::store::EnvelopeStore::data_key_counts`].
///
/// # Errors
/// On store failure.
pub async fn counts(db: &dyn SqlDb) -> StoreResult<Vec<(i32, u64)>> {
    db.read(COUNTS, &[])
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.int("kek_version")?,
                u64::try_from(r.big("n")?).unwrap_or(0),
            ))
        })
        .collect()
}

/// [`porteiro_core::store::EnvelopeStore::destroyed_data_key_count`].
///
/// # Errors
/// On store failure.
pub async fn destroyed(db: &dyn SqlDb) -> StoreResult<u64> {
    let rows = db.read(DESTROYED, &[]).await?;
    Ok(rows
        .first()
        .map(|r| r.big("n"))
        .transpose()?
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

fn key_arg(column: SealedColumn, key: &str) -> StoreResult<Arg<'_>> {
    if column.uuid_key() {
        Uuid::parse_str(key)
            .map(Arg::Uuid)
            .map_err(|_| porteiro_core::store::StoreError::NotFound)
    } else {
        Ok(Arg::Text(key))
    }
}

/// [`porteiro_core::store::EnvelopeStore::legacy_sealed_values`].
///
/// # Errors
/// On store failure.
pub async fn legacy_values(
    db: &dyn SqlDb,
    column: SealedColumn,
    prefix: &[u8],
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<SealedValue>> {
    // Table and column names come from a fixed list, never from input.
    let (table, key, value) = column.names();
    let len = prefix.len();
    let mut args = vec![Arg::Bytes(prefix), Arg::Int(i64::from(limit))];
    let after_clause = match after {
        Some(a) => {
            args.push(key_arg(column, a)?);
            format!("and {key} > $3")
        }
        None => String::new(),
    };
    let sql = format!(
        "select {key} as k, {value} as v from {table} \
         where {value} is not null and substr({value}, 1, {len}) <> $1 {after_clause} \
         order by {key} limit $2"
    );
    db.read(&sql, &args)
        .await?
        .iter()
        .map(|r| {
            Ok(SealedValue {
                key: if column.uuid_key() {
                    r.uuid("k")?.to_string()
                } else {
                    r.text("k")?
                },
                value: r.bytes("v")?,
            })
        })
        .collect()
}

/// [`porteiro_core::store::EnvelopeStore::replace_sealed_value`].
///
/// # Errors
/// On store failure.
pub async fn replace_value(
    db: &dyn SqlDb,
    column: SealedColumn,
    key: &str,
    old: &[u8],
    new: &[u8],
) -> StoreResult<bool> {
    let (table, key_col, value) = column.names();
    let sql = format!("update {table} set {value} = $3 where {key_col} = $1 and {value} = $2");
    let mut tx = db.begin(false).await?;
    let changed = tx
        .execute(
            &sql,
            &[key_arg(column, key)?, Arg::Bytes(old), Arg::Bytes(new)],
        )
        .await?
        == 1;
    tx.commit().await?;
    Ok(changed)
}

/// Records account `$1`'s data key as destroyed at `$2` (the key row itself goes with the
/// account, by the foreign key's cascade).
const SHRED: &str = "insert into destroyed_data_keys (id, owner_id, destroyed_at) \
     select id, owner_id, $2 from data_keys where owner_id = $1 on conflict do nothing";

/// Messages of account `$1` that no other party holds a copy of (notes to self, undelivered
/// messages, and those the other party deleted): nobody could read them any more.
const ORPHANED_MESSAGES: &str = "delete from messages where \
       (sender_id = $1 and (recipient_key is null or recipient_id is null or recipient_id = $1)) \
       or (recipient_id = $1 and (sender_key is null or sender_id is null or sender_id = $1))";

/// The account's wrapped copies of the other messages (useless without its data key).
const DROP_SENT_COPIES: &str = "update messages set sender_key = null where sender_id = $1";
const DROP_RECEIVED_COPIES: &str =
    "update messages set recipient_key = null where recipient_id = $1";

/// Crypto-shredding, in the transaction that deletes account `user_id`: its data key's id goes
/// on the record of destroyed keys, which a restore applies; the messages only it held go, and
/// its wrapped copies of the others are erased.
///
/// # Errors
/// On store failure.
pub async fn shred(tx: &mut dyn SqlTx, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
    tx.execute(SHRED, &[Arg::Uuid(user_id), Arg::Time(now)])
        .await?;
    for sql in [ORPHANED_MESSAGES, DROP_SENT_COPIES, DROP_RECEIVED_COPIES] {
        tx.execute(sql, &[Arg::Uuid(user_id)]).await?;
    }
    Ok(())
}

/// Implements [`porteiro_core::store::EnvelopeStore`] for a store type that implements
/// [`SqlDb`].
#[macro_export]
macro_rules! impl_envelope_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::porteiro_core::store::EnvelopeStore for $store {
            async fn key_encryption_keys(
                &self,
            ) -> ::porteiro_core::store::StoreResult<Vec<::porteiro_core::store::StoredKek>> {
                $crate::envelope::keks(self).await
            }
            async fn insert_key_encryption_key(
                &self,
                kek: &::porteiro_core::store::StoredKek,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::envelope::insert_kek(self, kek, events).await
            }
            async fn retire_key_encryption_key(
                &self,
                version: i32,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::envelope::retire_kek(self, version, now, events).await
            }
            async fn data_key_of(
                &self,
                owner: Option<::uuid::Uuid>,
            ) -> ::porteiro_core::store::StoreResult<Option<::porteiro_core::store::StoredDataKey>>
            {
                $crate::envelope::data_key_of(self, owner).await
            }
            async fn insert_data_key(
                &self,
                key: &::porteiro_core::store::StoredDataKey,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::envelope::insert_data_key(self, key, now).await
            }
            async fn data_keys_to_rewrap(
                &self,
                current: i32,
                limit: u32,
            ) -> ::porteiro_core::store::StoreResult<Vec<::porteiro_core::store::StoredDataKey>>
            {
                $crate::envelope::to_rewrap(self, current, limit).await
            }
            async fn rewrap_data_key(
                &self,
                id: ::uuid::Uuid,
                from: i32,
                to: i32,
                wrapped_key: &[u8],
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::envelope::rewrap(self, id, from, to, wrapped_key, now).await
            }
            async fn data_key_counts(
                &self,
            ) -> ::porteiro_core::store::StoreResult<Vec<(i32, u64)>> {
                $crate::envelope::counts(self).await
            }
            async fn destroyed_data_key_count(&self) -> ::porteiro_core::store::StoreResult<u64> {
                $crate::envelope::destroyed(self).await
            }
            async fn legacy_sealed_values(
                &self,
                column: ::porteiro_core::store::SealedColumn,
                prefix: &[u8],
                after: Option<&str>,
                limit: u32,
            ) -> ::porteiro_core::store::StoreResult<Vec<::porteiro_core::store::SealedValue>> {
                $crate::envelope::legacy_values(self, column, prefix, after, limit).await
            }
            async fn replace_sealed_value(
                &self,
                column: ::porteiro_core::store::SealedColumn,
                key: &str,
                old: &[u8],
                new: &[u8],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::envelope::replace_value(self, column, key, old, new).await
            }
        }
    };
}
