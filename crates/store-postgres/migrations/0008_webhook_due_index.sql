-- Webhook claims (issue 13 review): a claim reads an endpoint's due deliveries in this index's
-- order, ties broken by id, and stops at its limit, so its cost does not grow with the backlog.
-- Replaces the index of 0005, which lacked the id.
drop index if exists webhook_deliveries_due;
create index webhook_deliveries_due on webhook_deliveries(endpoint_id, next_attempt_at, id)
    where status = 'pending';
