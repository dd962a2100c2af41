-- One Rev.io step per device change at a time, held as a lease on the row
-- rather than a connection: a lock that holds a pool connection for the
-- length of a step starves the pool when more steps run than it has
-- connections, and the steps then wait for connections their own locks hold.
ALTER TABLE device_changes
    ADD COLUMN billing_lease_token text,
    ADD COLUMN billing_lease_until timestamptz;

