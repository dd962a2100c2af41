-- Bulk status changes of ThingSpace devices: what operators submitted, what
-- was sent to ThingSpace, what came back, and the audit trail.

-- One bulk change = one file submitted by an operator = one parent workflow.
CREATE TABLE bulk_changes (
    id               uuid PRIMARY KEY,
    account_name     text        NOT NULL,
    idempotency_key  text        UNIQUE,
    source_name      text        NOT NULL DEFAULT '',
    submitted_by     text        NOT NULL DEFAULT '',
    status           text        NOT NULL DEFAULT 'PENDING'
                     CHECK (status IN ('PENDING', 'RUNNING', 'FINISHED', 'FAILED')),
    total            int         NOT NULL,
    batches          int         NOT NULL,
    processed        int         NOT NULL DEFAULT 0,
    errors           int         NOT NULL DEFAULT 0,
    error_message    text,
    options          jsonb       NOT NULL DEFAULT '{}',
    workflow_id      text        NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);

-- One request to ThingSpace: a batch of compatible device changes, or a PPU
-- update. The row is written before the request is sent (state SENDING), so
-- a retried activity knows an earlier attempt may have reached ThingSpace and
-- reconciles instead of sending the state change twice.
CREATE TABLE thingspace_requests (
    id              bigserial PRIMARY KEY,
    bulk_change_id  uuid        NOT NULL REFERENCES bulk_changes (id),
    request_key     text        NOT NULL, -- 'batch:<n>' or 'ppu:<device change id>'
    operation       text        NOT NULL,
    account_name    text        NOT NULL,
    state           text        NOT NULL
                    CHECK (state IN ('SENDING', 'RETRY', 'ACCEPTED', 'REJECTED')),
    request_id      text,
    devices         int         NOT NULL,
    attempts        int         NOT NULL DEFAULT 0,
    error_code      text,
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    answered_at     timestamptz,
    UNIQUE (bulk_change_id, request_key)
);
CREATE INDEX thingspace_requests_request_id ON thingspace_requests (request_id);

-- One row per device of a bulk change.
CREATE TABLE device_changes (
    id                bigserial PRIMARY KEY,
    bulk_change_id    uuid        NOT NULL REFERENCES bulk_changes (id),
    seq               int         NOT NULL, -- order in the submitted file
    row_number        int         NOT NULL, -- line (CSV) or element (JSON) in the file
    iccid             text        NOT NULL,
    imei              text,
    operation         text        NOT NULL
                      CHECK (operation IN ('activate', 'suspend', 'restore', 'deactivate', 'inventory')),
    batch_no          int         NOT NULL,
    params            jsonb       NOT NULL DEFAULT '{}', -- service plan, MDN ZIP, reason code, ETF waiver
    ppu               jsonb,                             -- personal data: read only to build the request
    billing           jsonb,                             -- Rev.io service data
    status            text        NOT NULL DEFAULT 'PENDING'
                      CHECK (status IN ('PENDING', 'SUBMITTING', 'SUBMITTED', 'PROCESSED', 'ERROR')),
    request_pk        bigint      REFERENCES thingspace_requests (id),
    request_id        text,
    sync_result       jsonb,      -- an outcome known without waiting (synchronous answer or refusal)
    outcome           text,
    final_state       text,
    msisdn            text,
    error_code        text,
    error_message     text,
    confirmed_by      text,       -- callback | poll | sync
    billing_status    text        NOT NULL DEFAULT 'NONE'
                      CHECK (billing_status IN ('NONE', 'PENDING', 'CREATED', 'ERROR')),
    billing_error     text,
    submitted_at      timestamptz,
    confirmed_at      timestamptz,
    completed_at      timestamptz,
    UNIQUE (bulk_change_id, iccid),
    UNIQUE (bulk_change_id, seq)
);
CREATE INDEX device_changes_batch ON device_changes (bulk_change_id, batch_no, seq);
CREATE INDEX device_changes_iccid ON device_changes (iccid);
-- The same ICCID never has two state changes in flight, whichever bulk
-- change they belong to: ThingSpace refuses a change while one is pending,
-- and callbacks are matched to their device change by ICCID.
CREATE UNIQUE INDEX device_changes_one_in_flight ON device_changes (iccid)
    WHERE status IN ('SUBMITTING', 'SUBMITTED');

-- Our view of each device.
CREATE TABLE devices (
    iccid              text PRIMARY KEY,
    imei               text,
    account_name       text,
    status             text        NOT NULL,
    msisdn             text,
    site               text,
    activated_at       timestamptz,
    status_changed_at  timestamptz,
    last_device_change bigint      REFERENCES device_changes (id),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The M2M audit log: every HTTP exchange with ThingSpace and Rev.io, and
-- every per-device result. Bodies are redacted before they get here: no
-- tokens, passwords, keys, nor PPU personal data.
CREATE TABLE m2m_log (
    id               bigserial PRIMARY KEY,
    logged_at        timestamptz NOT NULL DEFAULT now(),
    bulk_change_id   uuid,
    device_change_id bigint,
    service          text        NOT NULL, -- thingspace | revio | workflow
    operation        text        NOT NULL,
    method           text,
    path             text,
    request_body     text,
    response_body    text,
    http_status      int,
    outcome          text        NOT NULL, -- ok | error | PROCESSED | ERROR
    error_code       text,
    error_message    text,
    request_id       text,
    attempt          int,
    duration_ms      int,
    dedupe_key       text        UNIQUE -- makes per-device result entries idempotent
);
CREATE INDEX m2m_log_bulk ON m2m_log (bulk_change_id, logged_at);
CREATE INDEX m2m_log_device_change ON m2m_log (device_change_id);

-- Every callback ThingSpace delivered, stored before it is acknowledged.
-- ThingSpace redelivers until it gets a 2xx, so (request, device) is the
-- identity and later copies only bump the counter.
CREATE TABLE callbacks (
    id                bigserial PRIMARY KEY,
    received_at       timestamptz NOT NULL DEFAULT now(),
    last_received_at  timestamptz NOT NULL DEFAULT now(),
    request_id        text        NOT NULL,
    iccid             text        NOT NULL,
    status            text        NOT NULL,
    fault_code        text,
    fault_string      text,
    msisdn            text,
    callback_count    int,
    copies            int         NOT NULL DEFAULT 1,
    payload           jsonb       NOT NULL, -- listener credentials removed
    device_change_id  bigint      REFERENCES device_changes (id),
    signal_result     text,
    UNIQUE (request_id, iccid)
);
CREATE INDEX callbacks_device_change ON callbacks (device_change_id);
CREATE INDEX callbacks_iccid ON callbacks (iccid);

-- Device changes whose callback did not come in time and are now checked by
-- the account's poller (batched status checks within the request budget).
CREATE TABLE poll_requests (
    device_change_id bigint PRIMARY KEY REFERENCES device_changes (id),
    account_name     text        NOT NULL,
    iccid            text        NOT NULL,
    operation        text        NOT NULL,
    request_id       text,
    workflow_id      text        NOT NULL,
    interval_ms      bigint      NOT NULL, -- first wait between checks; doubles up to max_interval_ms
    max_interval_ms  bigint      NOT NULL,
    attempts         int         NOT NULL DEFAULT 0,
    registered_at    timestamptz NOT NULL DEFAULT now(),
    next_poll_at     timestamptz NOT NULL DEFAULT now(),
    last_state       text
);
CREATE INDEX poll_requests_account ON poll_requests (account_name, next_poll_at);

-- Rev.io billing objects, stored the moment Rev.io returns their ids.
CREATE TABLE revio_services (
    device_change_id bigint PRIMARY KEY REFERENCES device_changes (id),
    iccid            text        NOT NULL,
    number           text        NOT NULL,
    customer_id      bigint      NOT NULL,
    service_id       bigint      NOT NULL,
    found_by         text        NOT NULL, -- created | search
    created_at       timestamptz NOT NULL DEFAULT now(),
    disconnected_at  timestamptz
);
CREATE TABLE revio_service_products (
    device_change_id   bigint      NOT NULL REFERENCES device_changes (id),
    idx                int         NOT NULL,
    product_id         bigint      NOT NULL,
    rate               text        NOT NULL,
    service_product_id bigint      NOT NULL,
    found_by           text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    disconnected_at    timestamptz,
    PRIMARY KEY (device_change_id, idx)
);
