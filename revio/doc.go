// Package revio is a small client for the Rev.io REST API (billing), limited to
// what the bulk-change workers need: create the service line of a freshly
// activated device, attach its recurring service products, find lines again
// by MSISDN/ICCID, and disconnect them.
//
// # Authentication
//
// Every call carries two credentials (Rev.io "Basic Authentication" and "API
// Management" docs): HTTP Basic with the user id "<login>@<clientcode>" and
// the Azure API Management header Ocp-Apim-Subscription-Key. Neither value is
// ever logged, placed in an error, or handed to the Observer; response bodies
// and error messages are scrubbed of them in case a gateway echoes a header
// back.
//
// # Retries and pacing
//
// The client paces itself with one token bucket per Client, shared by all
// goroutines, sized so that no rolling minute can exceed
// Config.CallsPerMinute calls (Rev.io's limit is 500/min per account).
// Transport-level retries are deliberately narrow: GET is retried on 5xx and
// network errors; POST, PATCH and DELETE are retried only when the request
// certainly never left this process (dial/DNS/TLS failure), because
// POST /v1/Services is not idempotent and a blind retry creates a duplicate
// billing line. A 429 is the gateway's refusal, so any method may be sent
// again: one whose Retry-After is at most 5 s is waited out and retried here
// (for up to 10 s of such waits per call, within the context's deadline); a
// longer one, none, or the 429 after those 10 s, is returned with RetryAfter
// so the caller's retry policy (Temporal) decides. An *Error with Sent=true and
// no definitive answer (OutcomeUnknown) means the caller must reconcile, e.g.
// FindServices by number, before creating again.
//
// # Rules from the Rev.io reference
//
// POST /v1/Services (reference "postv1_services"): customer_id and
// provider_id are both required (int32), number and number2 are at most 255
// characters, description at most 1000. CreateService refuses a request
// that breaks them before sending it, as an *Error wrapping
// ErrInvalidRequest (not retryable): Rev.io would refuse it with a 400, and
// a missing provider cannot be supplied by any retry. (Altaworx sent
// provider_id only when it had one; the reference marks it required.)
// Lengths count characters as .NET does (UTF-16 code units), not bytes.
//
// # Choices for points the Rev.io documentation does not confirm
//
//   - Dates are sent as plain "yyyy-mm-dd" (layout DateLayout). Rev.io types
//     them as date-time; Altaworx sent "yyyy-MM-ddZ" on create and plain
//     yyyy-MM-dd on disconnect. Plain dates avoid any time-zone shift of a
//     billing date. Inputs are validated before sending. Dates read back are
//     normalised to their yyyy-mm-dd prefix when they have one, so
//     "2024-05-01T00:00:00" becomes "2024-05-01".
//   - Search and paging parameters use the "search." prefix
//     (search.number, search.page, search.page_size), as in the working
//     Altaworx code; the docs say the prefix is optional. Pages are requested
//     with page_size 500, the documented maximum.
//   - Search by MSISDN is search.number, by ICCID search.number2. Because a
//     server may ignore an unknown filter or match partially, FindServices and
//     ListServiceProducts re-check every record against the criteria and drop
//     non-matching ones, and FindServices refuses an empty search.
//   - The proration flag of POST /v1/ServiceProduct is sent as
//     "generate_proration" (the name the PUT and DELETE docs use), always
//     present. The rate is decimal text in Go and a JSON number on the wire;
//     an empty Rate is omitted (the product's own rate then applies, if Rev.io
//     does that). Quantity 0 is sent as 1, as Altaworx always did.
//   - Error bodies may be an object, an array of {ok,id,error,message}
//     objects, or text; Error.Message holds the extracted, scrubbed text.
//   - Retry-After is honoured when present, as seconds or an HTTP date.
//   - GET /v1/SystemStatus is used as the credential check.
//   - Redirects are not followed: a redirect to another host would otherwise
//     carry the subscription key with it.
package revio
