-- Webhook endpoints (issue 13). The signing secret is sealed under the master key; during a
-- rotation the previous secret keeps signing until `previous_secret_until`. `event_types` is a
-- JSON array of event types, `["*"]` for every type. `failing_since` is the first failed attempt
-- after the last success: an endpoint failing for too long is disabled (`disabled_reason`).
create table webhook_endpoints (
    id                    text primary key,
    url                   text not null,
    description           text not null default '',
    event_types           text not null default '["*"]',
    enabled               integer not null default 1,
    secret_enc            blob not null,
    previous_secret_enc   blob,
    previous_secret_until integer,
    failing_since         integer,
    disabled_reason       text,
    created_at            integer not null,
    updated_at            integer not null
);

-- One row per (endpoint, event) to deliver, written in the same transaction as the audit event
-- it carries, so a committed change always has its delivery and a rolled-back one never does.
-- `status`: pending (due at `next_attempt_at`, which is also the lease of a claimed attempt),
-- delivered, or dead (every attempt failed: the dead-letter list). The payload is rebuilt from
-- the audit event at each attempt, so the `webhook-id` stays the same across retries.
create table webhook_deliveries (
    id               integer primary key autoincrement,
    endpoint_id      text not null references webhook_endpoints(id) on delete cascade,
    event_id         integer not null references audit_events(id),
    status           text not null default 'pending' check (status in ('pending', 'delivered', 'dead')),
    attempts         integer not null default 0,
    next_attempt_at  integer not null,
    last_attempt_at  integer,
    last_status_code integer,
    last_latency_ms  integer,
    last_error       text,
    created_at       integer not null,
    completed_at     integer
);
create index webhook_deliveries_due on webhook_deliveries(endpoint_id, next_attempt_at)
    where status = 'pending';
create index webhook_deliveries_by_endpoint on webhook_deliveries(endpoint_id, id);
create index webhook_deliveries_dead on webhook_deliveries(id) where status = 'dead';
create index webhook_deliveries_completed on webhook_deliveries(completed_at)
    where completed_at is not null;
