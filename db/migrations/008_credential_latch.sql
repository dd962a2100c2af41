-- ThingSpace's refusal of our credentials, shared by every worker: the first
-- refusal latches them for all, and no worker (nor a restarted one) sends a
-- token request or login again until an operator resets the latch
-- (`starter credentials-reset`). Five consecutive failed logins lock the
-- Verizon account, so N workers each trying once would lock it.
CREATE TABLE thingspace_credential_latches (
    base_url    text        NOT NULL,
    client_id   text        NOT NULL,
    username    text        NOT NULL,
    operation   text        NOT NULL, -- oauth (client id or secret refused) | login (username or password refused)
    http_status int,
    error_code  text        NOT NULL,
    error_message text,
    latched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (base_url, client_id, username)
);
