-- Placeholder so that this branch's migration 011 loads (tern refuses a gap).
-- Migration 009 belongs to another branch of issue 18: drop this file when merging.
SELECT 1;
