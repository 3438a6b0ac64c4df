-- Failed sign-ins for identifiers that match no account, counted like an account's so that an
-- unknown identifier costs the same (one write) and locks the same way. Keyed by the SHA-256 of
-- the normalised identifier: the raw text may be a password typed into the wrong field.
create table login_failures (
    identifier_hash       text primary key,
    failed_login_attempts integer not null default 0,
    locked_until          timestamptz,
    created_at            timestamptz not null,
    updated_at            timestamptz not null
);
create index login_failures_by_age on login_failures(updated_at);
