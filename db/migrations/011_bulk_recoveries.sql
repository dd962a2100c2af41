-- How many times `starter resume-failed` took a bulk change over, counted
-- once per recovered run: the recovered root numbers its requests to the
-- shards above every earlier run's, and a count kept in the workflow would
-- restart at one with each recovery (a recovered run starts afresh).
ALTER TABLE bulk_changes
    ADD COLUMN recoveries integer NOT NULL DEFAULT 0,
    ADD COLUMN recovery_run text;
