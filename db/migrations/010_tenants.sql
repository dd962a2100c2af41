-- Tenants: one deployment serves several customers, each with its own
-- ThingSpace credentials and accounts (config/tenants.go). Every bulk
-- change belongs to one; those written before tenants are the default
-- tenant's, which is what the top-level settings describe.
ALTER TABLE bulk_changes ADD COLUMN tenant text NOT NULL DEFAULT 'default';
CREATE INDEX bulk_changes_tenant ON bulk_changes (tenant, created_at);

-- An idempotency key is the tenant's: another tenant's key of the same
-- spelling is another submission, and must neither return nor reveal the
-- first tenant's bulk change.
ALTER TABLE bulk_changes DROP CONSTRAINT bulk_changes_idempotency_key_key;
ALTER TABLE bulk_changes ADD CONSTRAINT bulk_changes_tenant_idempotency_key UNIQUE (tenant, idempotency_key);

-- The tenant whose endpoint received a callback (its listener credentials
-- checked); NULL for callbacks stored before tenants (the default tenant's).
ALTER TABLE callbacks ADD COLUMN tenant text;
