-- Sessions are bound to the credential that was verified to open them: every event that must
-- end all of an account's sessions (password change or reset, disabling, "revoke all") moves the
-- epoch forward in the same transaction, and a session is only created while the epoch still
-- equals the one read before the password check.
alter table users add column credential_epoch bigint not null default 0;

-- Retired signing keys neither verify nor appear in the JWKS; their private half is erased.
alter table signing_keys add column retired_at timestamptz;
