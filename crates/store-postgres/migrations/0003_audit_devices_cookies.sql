-- The security event log. Append-only: a trigger refuses UPDATE and DELETE. No foreign key on
-- user_id: the record of what happened to an account outlives the account.
create table audit_events (
    id          bigint generated always as identity primary key,
    occurred_at timestamptz not null,
    event_type  text not null,
    outcome     text not null,
    user_id     uuid,
    actor_id    uuid,
    ip_address  text,
    user_agent  text,
    details     text not null default '{}'
);
create index audit_events_by_user on audit_events(user_id, id);
create index audit_events_by_type on audit_events(event_type, id);
create index audit_events_by_time on audit_events(occurred_at);
create function audit_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_events is append-only';
end
$$;
create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function audit_events_append_only();

-- Browsers that signed in successfully, identified by a device cookie (hashed) and the address
-- they signed in from. Failures from such a device count here, not on the account, so a lock
-- caused by others does not shut the owner out of a known device (README: lockout rule).
create table known_devices (
    user_id               uuid not null references users(id) on delete cascade,
    device_hash           text not null,
    ip_address            text not null,
    failed_login_attempts integer not null default 0,
    locked_until          timestamptz,
    created_at            timestamptz not null,
    updated_at            timestamptz not null,
    primary key (user_id, device_hash)
);

-- Browser sessions: the same session rows as the API's, reached through a cookie whose hash is
-- stored here instead of a refresh token.
alter table sessions add column cookie_hash text;
create unique index sessions_by_cookie on sessions(cookie_hash) where cookie_hash is not null;
