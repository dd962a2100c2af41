-- Where each account's poller stands in ThingSpace's device list.
--
-- A polling cycle lists the account page by page only until it has seen
-- every device change that is due, and at most worker.poll_max_requests
-- requests. The cursor is saved after every page, so that a retried cycle
-- (a limiter wait, a 5xx, a worker restart) and the next cycle resume where
-- the last page ended instead of starting again from page 1. It goes back
-- to the start when a cycle reaches the end of the list or has seen every
-- due device.
CREATE TABLE poll_cursors (
    account_name   text        PRIMARY KEY,
    -- ThingSpace's paging position (thingspace.ListCursor as JSON);
    -- NULL: the start of the list.
    cursor         jsonb,
    -- When the current pass over the list (a lap) read its first page: a
    -- device due since then and not seen when the lap reaches the end of
    -- the list is not in the list.
    lap_started_at timestamptz,
    -- The cycle that last used the row (its activity) and the ThingSpace
    -- requests it made, so that the request cap holds across the retries
    -- of one cycle.
    cycle_key      text        NOT NULL DEFAULT '',
    cycle_requests int         NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
