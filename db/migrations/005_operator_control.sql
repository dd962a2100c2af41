-- Operators in control of a bulk change: pause, resume, cancel, a start
-- time, four-eyes approval and re-drives of failed lines.

-- A device change not yet sent when its bulk change was cancelled (or its
-- approval refused or expired) ends CANCELLED: nothing was asked of
-- ThingSpace for it.
ALTER TABLE device_changes DROP CONSTRAINT device_changes_status_check;
ALTER TABLE device_changes ADD CONSTRAINT device_changes_status_check
    CHECK (status IN ('PENDING', 'SUBMITTING', 'SUBMITTED', 'PROCESSED', 'ERROR', 'CANCELLED'));

-- SCHEDULED: waiting for its start time; AWAITING_APPROVAL: waiting for a
-- second operator; PAUSED: sending nothing new; CANCELLED: ended by an
-- operator (devices already sent finished normally).
ALTER TABLE bulk_changes DROP CONSTRAINT bulk_changes_status_check;
ALTER TABLE bulk_changes ADD CONSTRAINT bulk_changes_status_check
    CHECK (status IN ('PENDING', 'SCHEDULED', 'AWAITING_APPROVAL', 'RUNNING', 'PAUSED', 'FINISHED', 'FAILED', 'CANCELLED'));

ALTER TABLE bulk_changes
    ADD COLUMN cancelled       int         NOT NULL DEFAULT 0,
    ADD COLUMN not_before      timestamptz,
    ADD COLUMN needs_approval  boolean     NOT NULL DEFAULT false,
    ADD COLUMN approved_by     text,
    ADD COLUMN approved_at     timestamptz,
    -- A re-drive is a new bulk change of the failed device changes of
    -- another; the original lists its re-drives by this column.
    ADD COLUMN redrive_of      uuid REFERENCES bulk_changes (id);
CREATE INDEX bulk_changes_redrive_of ON bulk_changes (redrive_of) WHERE redrive_of IS NOT NULL;
