// Package simulator is a ThingSpace Connectivity Management (M2M) API
// simulator: a real HTTP server (Simulator.Handler) for the product's
// tests, demo and benchmark. It is built from the reference digest
// (shared/reference/thingspace-api.md): facts tagged [doc] or [sdk] there
// are followed; it defines its own wire types and does not import the
// client package, so contract tests between the two catch mistakes on
// either side.
//
// Served: OAuth token/revoke, session login/logout, the four device
// actions plus contactInfo (PPU update), add, list, request status,
// callback listener registration, CarrierService callbacks with retries,
// the documented limits, injectable faults, and /admin/ endpoints.
//
// # Choices where the reference is unconfirmed
//
// Authentication:
//   - OAuth token: scope is "am_application_scope default" (WSO2 default);
//     the token is a UUID; expires_in is the remaining lifetime rounded up
//     (never 0 while valid). Stats.OAuthTokensIssued counts every 200
//     answer, also when the same token is returned again.
//   - OAuth errors: missing Basic auth or a wrong client → 401
//     invalid_client; missing grant_type → 400 invalid_request; another
//     grant_type → 400 unsupported_grant_type. Revoke of an unknown token
//     answers 200 without the RevokedAccessToken header.
//   - Wrong login credentials → 400 UnifiedWebService.REQUEST_FAILED.InvalidCredentials;
//     failures are counted per username. The attempt that reaches
//     MaxFailedLogins still answers InvalidCredentials; afterwards every
//     login of that username answers
//     UnifiedWebService.REQUEST_FAILED.AccountLocked, even with the right
//     password, until UnlockLogins (POST /admin/unlock). A success before
//     the lock resets the count. Missing username/password → 400
//     REQUEST_FAILED.UnexpectedError, not counted.
//   - Session errors are HTTP 400. A well-formed GUID that was never
//     issued or was logged out answers SessionToken.Expired (the client's
//     remedy, logging in again, is the same). Every request that passes the
//     session check slides the idle timeout, whatever its outcome.
//   - Gateway order: Bearer check (401 900901/900902), then throttling
//     (429), then the session check. Login needs only the Bearer.
//
// Requests and errors:
//   - Unknown JSON members are refused (400 REQUEST_FAILED.UnexpectedError),
//     as are members that do not belong to the action (e.g. reasonCode on
//     suspend). An empty body → 400 INPUT_INVALID.RequestUndefined. Missing
//     or malformed required fields (servicePlan, 5-digit mdnZipCode,
//     reasonCode, devices, PPU members) → 400 REQUEST_FAILED.UnexpectedError
//     ("missing required elements" in the AE capture). Deactivate without
//     accountName → 400 INPUT_INVALID.Account.NotDefined.
//   - Devices must be listed explicitly: selection by groupName,
//     servicePlan or customFields (suspend/restore/deactivate) is refused
//     with REQUEST_FAILED.UnexpectedError.
//   - Identifier formats: iccid 18–20 digits, imei 14–16 (the DeviceId
//     model's "up to 16 digits": the 16-digit IMEISV too; no check digit is
//     verified), mdn/msisdn/min 10–15, esn 11 digits or 8 hex, meid 14 hex,
//     eid 32 digits, imsi 14–15; else INPUT_INVALID.Device.Identifier.Invalid.
//     Any other kind → INPUT_INVALID.Device.Kind.Invalid. Kinds compare
//     case-insensitively.
//   - Activate: skuNumber stands in for the IMEI of a 4G device named by its
//     ICCID (CarrierActivateRequest.skuNumber). A request with an entry that
//     names no imei (nor esn/meid, 3G hardware ids) and no non-blank
//     skuNumber is refused as a whole, after the other activate checks: 400
//     REQUEST_FAILED.UnexpectedError, the "missing required elements" code
//     above (whether Verizon refuses it as a whole or per device is
//     unpublished). The SKU's value is not checked against any catalogue.
//   - A device named by an identifier that belongs to another account than
//     the request's accountName is refused with
//     INPUT_INVALID.Device.Account.Invalid ("The device was not a part of
//     the account specified", S-cberr), like any per-device refusal (below);
//     its "Failed" callback goes to the request's account and carries the
//     request's identifiers, telling that account nothing about the device.
//     A device of no account is DeviceNotFound. Without accountName any
//     configured account matches. A single-device list lookup of another
//     account's device answers DeviceNotFound (no list code is published).
//   - reasonCode accepts any non-empty value (only "FF" is documented).
//   - The PPU is checked for the members SDK-js marks required, no PO box
//     in addressLine1, country US or USA.
//   - An apostrophe ('), "<" or backslash in any text member of the PPU
//     (activate's primaryPlaceOfUse and the contactInfo update) → 400
//     INPUT_INVALID.Request.InvalidCharacter, checked before the PPU rules
//     above; the message names the member and the character, not the
//     value. The synchronous error table (secondary capture) lists these
//     characters for the whole request without saying which members it
//     checks; the simulator checks the PPU, the free text this product
//     sends.
//   - Unknown path or wrong method → 400 gateway fault 900906.
//   - 5xx fault bodies: 500 → {errorCode: REQUEST_FAILED.UnexpectedError},
//     502 → an HTML page, 503 → gateway fault 101503.
//
// Device actions and callbacks:
//   - Per-device refusal codes: another account's device
//     (Device.Account.Invalid), then seeded FailWith, then a pending change
//     (DeviceState.Invalid), then activate on active (DeviceAlreadyActive),
//     then the action matrix (DeviceState.Invalid), then the per-line daily
//     limit (REQUEST_FAILED.MaxActionsPerDay). Unknown device →
//     DeviceNotFound.
//   - A request with exactly one device answers such a refusal
//     synchronously: HTTP 400 {errorCode, errorMessage}, no requestId, no
//     callback, nothing changed. Multi-device requests answer 200
//     {requestId}; refused devices get a "Failed" callback after the same
//     delay as successful ones.
//   - Config.RefuseWholeRequest (off by default) is the other reading of
//     S-cberr: a multi-device request in which any device would be refused
//     is refused as a whole, synchronously: HTTP 400 with the code and text
//     of the first such device in request order (DeviceNotFound for an
//     unknown device, Device.Account.Invalid for one of another account,
//     DeviceState.Invalid for a wrong state or a device named twice,
//     DeviceAlreadyActive, MaxActionsPerDay, a seeded FailWith), nothing
//     applied to any device, no requestId, no callback. The answer does
//     not say which device was refused. It
//     applies to activate, suspend, restore, deactivate and contactInfo,
//     not to add (whose answer is per device anyway).
//   - Suspend→deactivate is allowed (L-cds) unless
//     Config.DisallowSuspendToDeactivate (S-states).
//   - Deactivate with deleteAfterDeactivation true: when a device's
//     deactivation completes it is removed from its account's inventory:
//     list pages (any filter) no longer show it, a single-device lookup and
//     any later request naming it answer DeviceNotFound, and /add may add
//     it again as a new pre-active device. Its callback (Success,
//     deactivateResponse, envelope ICCID and IMEI) is still sent to the
//     account's listener. false or absent leaves it in the account,
//     deactive. Removed devices stay in the admin views (Device, Devices,
//     GET /admin/devices) with removed: true and their last state.
//   - contactInfo is allowed only on active devices, has no pending state
//     and does not count toward the per-line daily limit; the daily limit
//     counts accepted state changes (activate, suspend, restore,
//     deactivate) in a rolling 24 h.
//   - The MSISDN is assigned when activation completes (not while
//     pending), from a counter starting at 3125550000, and reported as
//     kinds mdn, msisdn and min with the same value. Released numbers are
//     never handed out again. Seeded active/suspended devices get plan
//     "m2m_4G".
//   - Callback envelope deviceIds are the device's ICCID and IMEI (lower-
//     case kinds) whatever identifier the request used; for an unknown
//     device, the request's identifiers. deviceResponse is
//     {"<action>Response": {"deviceIds": [...], "servicePlan"?,
//     "autoResumeDate"?}}: activate carries iccid, imei, mdn, msisdn, min
//     and servicePlan; suspend carries autoResumeDate = completion + 180
//     days (no auto-resume is simulated); deactivate carries iccid and imei.
//   - Callbacks go to the CarrierService listener of the device's account
//     (for unknown devices: the request's account, else the default),
//     looked up at each attempt; none registered → not sent, counted as
//     dropped. Callback listener ports are not restricted.
//   - With ReorderCallbacks off and CallbackConcurrency 1, a request's
//     callbacks arrive in request order when their completion times are
//     equal; more workers may interleave them slightly.
//   - A duplicated callback is a second, independent delivery (own
//     retries); a late one has its first attempt delayed; drop, duplicate
//     and late are decided once per device callback.
//
// Listing:
//   - Page size is 2000, or maxNumberOfDevices when smaller (it caps the
//     page, not the total). 202 + hasMoreData:true when more remain.
//   - Order: date added; devices added at the same instant (seeds with the
//     same AddedAt) in the order added (the internal id). The live order of
//     ties is unconfirmed. Devices get createdAt values 1 ms apart unless
//     seeded with AddedAt.
//   - Paging by "earliest", the default and the only paging the published
//     answer model allows: send "earliest" = the newest createdAt received.
//     earliest and latest are inclusive (S-list says "added after/before";
//     inclusive or not is unconfirmed), so the devices of that instant come
//     again and the client skips those it already has. More devices than a
//     page added at one instant cannot be paged past this way.
//   - The answer has no largestDeviceIdSeen member (AccountDeviceListResult
//     is {devices, hasMoreData}). A request's largestDeviceIdSeen (a
//     published input, not negative) keeps the devices with a greater
//     internal id; in the simulator id order is the date-added order.
//   - Config.ListCursorPaging (off by default; thingspace-simulator
//     -list-cursor): the answer to a request with largestDeviceIdSeen
//     carries a top-level "largestDeviceIdSeen", the last internal id of
//     the page (the request's value when the page is empty), to page by.
//   - Timestamps are RFC 3339 with milliseconds in US Eastern time, e.g.
//     "2024-05-01T10:42:15.123-04:00".
//   - currentState accepts any casing/spelling of the state names; an
//     unknown one → 400 REQUEST_FAILED.UnexpectedError. State strings:
//     "pre-active", "active", "suspend", "deactive", "pending activation",
//     "pending suspend", "pending resume", "pending deactivation".
//   - Single-device lookups include extendedAttributes with the stored
//     Primary Place of Use under keys PrimaryPlaceOfUseFirstName, ...LastName,
//     ...AddressLine1, ...AddressLine2, ...City, ...State, ...Zip, ...Country.
//
// Other endpoints:
//   - Request status: unknown id, or an id of another account → 400
//     REQUEST_FAILED.RequestNotFound; a multi-device request or a
//     contactInfo request → 400 REQUEST_FAILED.RequestStatusNotSupported.
//     Since single-device refusals are synchronous, status is Pending or
//     Success in practice.
//   - Callback registration accepts the 23 service names of SDK-rs; a new
//     registration of the same service replaces the old one. Deleting an
//     unregistered service → 400 REQUEST_FAILED.CallbackNotFound.
//   - Add: state must be exactly "preactive"; a device already in the
//     account gets "Device already exists in the account", one in another
//     account "Device belongs to another account"; a device without an
//     ICCID "Device must be identified by an ICCID".
//
// Limits:
//   - Throttling answers 429 with Retry-After (whole seconds until a slot
//     frees, at least 1) and {"fault":{"code":"900800","message":"Message
//     throttled out",...}}. Windows are rolling, per attributed account,
//     and count admitted requests only. ActivateRequestsPerMinute is per
//     account. RequestsPerHour counts every API request that passed the
//     Bearer check (OAuth and login included).
//   - A request is attributed to the {account} in its path, else its body's
//     accountName, else the default account (OAuth and login).
//   - Stats count every request that reached the simulator, throttled or
//     not, so MaxRequestsInWindow shows how hard a client pushed.
//
// Faults:
//   - Latency is spent before processing; a client that gives up during it
//     changes nothing. TimeoutRate applies to accepted activate, suspend,
//     restore, deactivate, contactInfo and add requests: applied, then the
//     200 is held for StallFor (counted in Stats.AnswersStalled).
//   - GatewayAfterApplyRate applies to the same accepted requests not
//     stalled: applied, then answered 502 or 504 with the gateway's HTML
//     page instead of the 200 (counted in Stats.GatewayAfterApply). The
//     published contract puts WSO2 in front of the M2M API, and its 5xx
//     says nothing about what the backend did; ErrorRate's 5xx, before any
//     processing, is the other case.
//   - A throttling burst (ThrottleBurst, POST /admin/throttle-burst
//     {"requests": N, "retry_after": "2s"}) answers the next N requests that
//     reach the throttling step 429 with that Retry-After and the gateway's
//     throttling fault, before the configured limits are consulted: the
//     account's quota spent by other applications, which the documented
//     limits cannot show. Refused requests use no quota.
//
// Stats.AcceptedChanges counts, per ICCID and action, the accepted
// requests that included the device (answered 2xx, or applied and then
// stalled or answered 502/504 by a fault), whatever the device's own
// outcome, so that duplicate submissions show up. Stats.AppliedChanges
// counts only the devices ThingSpace changed (not those it refused).
package thingspacesim
