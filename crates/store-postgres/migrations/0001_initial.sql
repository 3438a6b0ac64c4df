-- Porteiro schema v1 (PostgreSQL). Same version and shape as the SQLite migration.
-- Append-only: never edit a shipped migration, add the next number instead (same in SQLite).

create table users (
    id                    uuid primary key,
    username              text not null,
    username_key          text not null unique,
    email                 text not null unique,
    first_name            text,
    last_name             text,
    password_hash         text not null,
    is_active             boolean not null default true,
    is_admin              boolean not null default false,
    email_verified        boolean not null default false,
    failed_login_attempts integer not null default 0,
    locked_until          timestamptz,
    locale                text not null default 'en',
    created_at            timestamptz not null,
    updated_at            timestamptz not null
);

create table sessions (
    id             uuid primary key,
    user_id        uuid not null references users(id) on delete cascade,
    last_active_at timestamptz not null,
    expires_at     timestamptz not null,
    revoked_at     timestamptz,
    revoke_reason  text,
    ip_address     text,
    user_agent     text,
    device_name    text not null,
    device_type    text not null,
    os             text,
    browser        text,
    created_at     timestamptz not null,
    updated_at     timestamptz not null
);
create index sessions_by_user on sessions(user_id, revoked_at, expires_at);

-- One family per session: every refresh token of a session belongs to its family.
create table refresh_tokens (
    token_hash text primary key,
    session_id uuid not null references sessions(id) on delete cascade,
    expires_at timestamptz not null,
    used_at    timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null
);
create index refresh_tokens_by_session on refresh_tokens(session_id);

create table password_reset_tokens (
    token_hash text primary key,
    user_id    uuid not null references users(id) on delete cascade,
    expires_at timestamptz not null,
    used_at    timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null
);
create index password_reset_tokens_by_user on password_reset_tokens(user_id);

create table signing_keys (
    kid             text primary key,
    algorithm       text not null,
    public_key      bytea not null,
    private_key_enc bytea not null,
    created_at      timestamptz not null,
    updated_at      timestamptz not null
);

-- Payloads are sealed (AES-256-GCM) and erased once delivered or abandoned.
create table mail_outbox (
    id              uuid primary key,
    payload         bytea,
    status          text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null,
    lease_until     timestamptz,
    last_error      text,
    created_at      timestamptz not null,
    updated_at      timestamptz not null
);
create index mail_outbox_due on mail_outbox(status, next_attempt_at);
