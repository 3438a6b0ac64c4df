-- Secure storage (issue 17): envelope encryption and encrypted user messages. Times are Unix
-- milliseconds; ids UUID text.
--
-- master key ──seals──▶ key_encryption_keys.private_key_enc (RSA-3072, OAEP-SHA256)
--            key-encryption key ──wraps──▶ data_keys.wrapped_key (AES-256-GCM, one per account
--            plus the deployment's own) ──encrypts──▶ secrets and messages.

-- Key-encryption keys, one row per version; the newest unretired version wraps new data keys.
-- The private half is erased when the version is retired (no data key refers to it any more).
create table key_encryption_keys (
    version         integer primary key,
    algorithm       text not null,
    public_key      blob not null,
    private_key_enc blob,
    created_at      integer not null,
    retired_at      integer
);

-- Data keys, stored only wrapped. `owner_id` null is the deployment's own key (signing keys,
-- queued mail, webhook secrets); otherwise one per account, destroyed with the account.
create table data_keys (
    id          text primary key,
    owner_id    text references users(id) on delete cascade,
    kek_version integer not null references key_encryption_keys(version),
    wrapped_key blob not null,
    created_at  integer not null,
    updated_at  integer not null
);
create unique index data_keys_owner on data_keys(owner_id);
create index data_keys_kek on data_keys(kek_version);

-- The record of destroyed data keys (crypto-shredding): a restore applies it, so an older backup
-- does not bring an erased account's secrets back.
create table destroyed_data_keys (
    id           text primary key,
    owner_id     text,
    destroyed_at integer not null
);

-- Private messages between accounts. `content` (subject, body, the recipient as typed) is
-- AES-256-GCM under a key of its own, stored wrapped once under each party's data key.
-- A party's wrapped copy is null when that party deleted the message (or, for the recipient,
-- when it was never delivered); the row goes when neither copy remains.
create table messages (
    id            text primary key,
    sender_id     text references users(id) on delete set null,
    recipient_id  text references users(id) on delete set null,
    sender_key    blob,
    recipient_key blob,
    content       blob not null,
    read_at       integer,
    created_at    integer not null
);
create index messages_inbox on messages(recipient_id, created_at) where recipient_key is not null;
create index messages_sent on messages(sender_id, created_at) where sender_key is not null;

-- Whether an account receives messages from other accounts.
alter table users add column accept_messages integer not null default 1;
