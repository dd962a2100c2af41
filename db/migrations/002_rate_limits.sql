-- ThingSpace request budget per account, shared by every worker process.
--
-- Each request that goes to ThingSpace is first recorded here, inside a
-- transaction that holds the account's row locks, and only if the window
-- still has room: however many workers run, the account never exceeds its
-- limit in any rolling window.

CREATE TABLE rate_limit_buckets (
    account_name    text        NOT NULL,
    bucket          text        NOT NULL, -- 'requests' (every request) | 'activate'
    -- After a 429, nothing goes out before throttled_until, and until
    -- paced_until requests are spaced evenly below the limit instead of
    -- going out in a burst.
    throttled_until timestamptz,
    paced_until     timestamptz,
    last_at         timestamptz,
    PRIMARY KEY (account_name, bucket)
);

CREATE TABLE rate_limit_events (
    account_name text        NOT NULL,
    bucket       text        NOT NULL,
    at           timestamptz NOT NULL,
    op           text        NOT NULL
);
CREATE INDEX rate_limit_events_window ON rate_limit_events (account_name, bucket, at);
