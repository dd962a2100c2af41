-- Deactivation removes the device from ThingSpace's inventory when the
-- request carries deleteAfterDeactivation (the predecessor's behaviour; the
-- setting thingspace.delete_after_deactivation, or the file's
-- delete_after_deactivation column).
ALTER TABLE device_changes
    -- The deleteAfterDeactivation value of the last request built for this
    -- device change, written before the request is sent, so that a lost
    -- answer and polling know whether an absent device was removed on
    -- purpose. NULL: no deactivation request was built for it.
    ADD COLUMN delete_after_deactivation boolean,
    -- The deactivation succeeded with deleteAfterDeactivation: ThingSpace no
    -- longer has the device in the account's inventory.
    ADD COLUMN removed_from_thingspace boolean NOT NULL DEFAULT false;

-- Our view of each device: when a deactivation removed it from ThingSpace's
-- inventory (NULL while ThingSpace has it; a later change that puts it back,
-- such as an inventory add or an activation, clears it).
ALTER TABLE devices ADD COLUMN removed_from_thingspace_at timestamptz;
