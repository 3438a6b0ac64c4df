-- Multi-factor sign-in (issue 14). Times are Unix milliseconds; ids UUID text.

-- Authenticator apps (TOTP). One row per account that started a setup: `enabled_at` stays null
-- until a first code proves the app works. The secret is sealed under the master key, bound to
-- the account. `last_step` is the 30-second step of the last code accepted: a code is accepted
-- at most once, because only a later step can replace it (a conditional update).
create table totp_credentials (
    user_id    text primary key references users(id) on delete cascade,
    secret_enc blob not null,
    enabled_at integer,
    last_step  integer,
    created_at integer not null,
    updated_at integer not null
);

-- Backup codes: keyed hashes only (HMAC under the master key), so a database dump alone does not
-- allow guessing them offline. One set per account; a new set replaces the old one.
create table backup_codes (
    user_id    text not null references users(id) on delete cascade,
    code_hash  text not null,
    used_at    integer,
    created_at integer not null,
    primary key (user_id, code_hash)
);

-- Second steps of sign-in in progress. The `mfa_token` (stored hashed) proves only that the
-- password was verified for this account from this client (`client_hash`). It lives at most
-- five minutes, is spent by the success that ends it (`consumed_at`) and dies after
-- `failed_attempts` reaches the limit. `amr` holds the methods already used (a JSON array),
-- `methods` those offered for the second step. An emailed code is kept as a keyed hash.
create table mfa_challenges (
    id                    text primary key,
    token_hash            text not null unique,
    user_id               text not null references users(id) on delete cascade,
    credential_epoch      integer not null,
    client_hash           text not null,
    device_hash           text,
    known_device          integer not null default 0,
    methods               text not null,
    amr                   text not null,
    failed_attempts       integer not null default 0,
    email_code_hash       text,
    email_code_expires_at integer,
    email_codes_sent      integer not null default 0,
    email_last_sent_at    integer,
    expires_at            integer not null,
    consumed_at           integer,
    created_at            integer not null
);
create index mfa_challenges_by_expiry on mfa_challenges(expires_at);

-- The authentication methods (RFC 8176 `amr`) a session was opened with, kept across refreshes.
alter table sessions add column amr text not null default '["pwd"]';
