-- The security event log. Append-only: triggers refuse UPDATE and DELETE. No foreign key on
-- user_id: the record of what happened to an account outlives the account.
create table audit_events (
    id          integer primary key autoincrement,
    occurred_at integer not null,
    event_type  text not null,
    outcome     text not null,
    user_id     text,
    actor_id    text,
    ip_address  text,
    user_agent  text,
    details     text not null default '{}'
);
create index audit_events_by_user on audit_events(user_id, id);
create index audit_events_by_type on audit_events(event_type, id);
create index audit_events_by_time on audit_events(occurred_at);
create trigger audit_events_no_update before update on audit_events
begin
    select raise(abort, 'audit_events is append-only');
end;
create trigger audit_events_no_delete before delete on audit_events
begin
    select raise(abort, 'audit_events is append-only');
end;

-- Browsers that signed in successfully, identified by a device cookie (hashed) and the address
-- they signed in from. Failures from such a device count here, not on the account, so a lock
-- caused by others does not shut the owner out of a known device (README: lockout rule).
create table known_devices (
    user_id               text not null references users(id) on delete cascade,
    device_hash           text not null,
    ip_address            text not null,
    failed_login_attempts integer not null default 0,
    locked_until          integer,
    created_at            integer not null,
    updated_at            integer not null,
    primary key (user_id, device_hash)
);

-- Browser sessions: the same session rows as the API's, reached through a cookie whose hash is
-- stored here instead of a refresh token.
alter table sessions add column cookie_hash text;
create unique index sessions_by_cookie on sessions(cookie_hash) where cookie_hash is not null;
