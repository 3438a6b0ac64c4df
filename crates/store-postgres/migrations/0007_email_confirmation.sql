-- Address confirmation at registration (issue 14). `email_verified_at` is when the current address
-- was confirmed; accounts confirmed before this migration keep their flag and get their last
-- change as the time.
alter table users add column email_verified_at timestamptz;
update users set email_verified_at = updated_at where email_verified;

-- Confirmation links: the token is stored hashed, lives 24 hours and is spent once. It confirms
-- the address it was sent to (`email`) only while that is still the account's address.
create table email_confirmation_tokens (
    token_hash text primary key,
    user_id    uuid not null references users(id) on delete cascade,
    email      text not null,
    expires_at timestamptz not null,
    used_at    timestamptz,
    created_at timestamptz not null
);
create index email_confirmation_tokens_by_user on email_confirmation_tokens(user_id, created_at);
