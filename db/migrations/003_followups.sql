-- Follow-up steps (the Rev.io service of an activation, its disconnection
-- after a deactivation) are owed work: billing_status PENDING says a step
-- is owed and has not ended, whichever step it is (the operation tells).
--
--   EXISTING      an already-active device whose Rev.io service was found,
--                 not created
--   DISCONNECTED  the service of a deactivated device was disconnected
ALTER TABLE device_changes DROP CONSTRAINT device_changes_billing_status_check;
ALTER TABLE device_changes ADD CONSTRAINT device_changes_billing_status_check
    CHECK (billing_status IN ('NONE', 'PENDING', 'CREATED', 'EXISTING', 'DISCONNECTED', 'ERROR'));

-- The code of a billing failure, so that callers branch on it (for example
-- MSISDN_UNKNOWN: the service needs the number ThingSpace assigned).
ALTER TABLE device_changes ADD COLUMN billing_error_code text;

-- Owed steps are looked up per bulk change.
CREATE INDEX device_changes_billing_owed ON device_changes (bulk_change_id, id)
    WHERE billing_status IN ('PENDING', 'ERROR');
