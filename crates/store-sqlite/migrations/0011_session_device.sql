-- The device a session was opened from (the keyed hash of sign_in_devices.device_key), so that
-- "this wasn't me" can end every session of the disowned device, not only the one it names.
alter table sessions add column device_key text;
