-- What a bulk change was submitted with: a hash of its account and its
-- validated device changes (never the file itself: it holds personal data).
-- A submission without an idempotency key takes this hash as its key, so
-- that submitting the same file again after a failed start finds the bulk
-- change already written instead of writing a second one; a key used again
-- with a different file is refused by comparing it. NULL for bulk changes
-- written before it, and for re-drives (their key names what they re-drive).
ALTER TABLE bulk_changes ADD COLUMN content_hash text;
