-- Account recovery and account safety (issue 16). Times are Unix milliseconds; ids UUID text.

-- Recovery addresses (seed 004): at most five per account, enforced by the store. `email` is
-- normalised (trimmed, lowercase). A verified address belongs to one account only.
create table recovery_emails (
    id          text primary key,
    user_id     text not null references users(id) on delete cascade,
    email       text not null,
    verified_at integer,
    created_at  integer not null,
    updated_at  integer not null,
    unique (user_id, email)
);
create unique index recovery_emails_verified on recovery_emails(email) where verified_at is not null;

-- Links that verify a recovery address: stored hashed, 24 hours, spent once.
create table recovery_email_tokens (
    token_hash        text primary key,
    recovery_email_id text not null references recovery_emails(id) on delete cascade,
    expires_at        integer not null,
    used_at           integer,
    created_at        integer not null
);
create index recovery_email_tokens_by_address on recovery_email_tokens(recovery_email_id);

-- The catalogue of security questions, managed by administrators.
create table security_questions (
    id         text primary key,
    question   text not null unique,
    is_active  integer not null default 1,
    created_at integer not null,
    updated_at integer not null
);

-- A user's answers: normalised, then hashed with Argon2id. Never stored or returned in clear.
create table user_security_answers (
    user_id     text not null references users(id) on delete cascade,
    question_id text not null references security_questions(id) on delete cascade,
    answer_hash text not null,
    created_at  integer not null,
    updated_at  integer not null,
    primary key (user_id, question_id)
);

-- Wrong answers count on their own counter and lock question-based recovery for a while.
alter table users add column question_failed_attempts integer not null default 0;
alter table users add column question_locked_until integer;

-- Proofs that an account's questions were answered: stored hashed, short-lived, spent by the
-- password reset that needs them.
create table recovery_proofs (
    token_hash text primary key,
    user_id    text not null references users(id) on delete cascade,
    expires_at integer not null,
    used_at    integer,
    created_at integer not null
);
create index recovery_proofs_by_user on recovery_proofs(user_id);

-- New-device sign-in alerts: whether the account wants them, and whether the owner said "this
-- wasn't me" (the password is then refused until a reset).
alter table users add column login_alerts integer not null default 1;
alter table users add column password_reset_required integer not null default 0;

-- Devices an account has signed in from, for alerts only (not for lockout: that is
-- known_devices). `device_key` is a keyed hash of the device cookie, or of the user agent and
-- network for API clients.
create table sign_in_devices (
    user_id       text not null references users(id) on delete cascade,
    device_key    text not null,
    first_seen_at integer not null,
    last_seen_at  integer not null,
    primary key (user_id, device_key)
);

-- "This wasn't me" links mailed with an alert: stored hashed, 7 days, spent once; they end only
-- the session they name (no foreign key: the link outlives a purged session).
create table sign_in_alerts (
    token_hash text primary key,
    user_id    text not null references users(id) on delete cascade,
    session_id text not null,
    expires_at integer not null,
    used_at    integer,
    created_at integer not null
);
create index sign_in_alerts_by_user on sign_in_alerts(user_id);
