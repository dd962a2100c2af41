package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/thingspace"
)

// CredentialLatches is the ThingSpace client's shared credential latch
// (thingspace.Latches) in PostgreSQL: a row per ThingSpace base URL, OAuth
// client and M2M user, written by the first refusal and removed only by an
// operator (ResetCredentialLatches).
type CredentialLatches struct{ Store *Store }

var _ thingspace.Latches = CredentialLatches{}

// CredentialLatches returns the store's shared credential latch.
func (s *Store) CredentialLatches() CredentialLatches { return CredentialLatches{Store: s} }

// Hold takes a transaction-scoped advisory lock on the key, so that one
// worker at a time authenticates with these credentials: workers starting
// together with a wrong password make one failed login, not one each. The
// lock goes with the transaction, so a worker that dies holding it does not
// keep the others waiting.
func (l CredentialLatches) Hold(
	ctx context.Context,
	key thingspace.CredentialKey,
) (*thingspace.Refusal, func(), error) {
	tx, err := l.Store.Pool.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("hold the credential latch: %w", err)
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx) // pgx closes the connection when it cannot roll back, ending the lock
	}
	if _, err := tx.Exec(ctx, `
		SELECT pg_advisory_xact_lock(hashtextextended(concat_ws(E'\n', 'thingspace-credentials', $1::text, $2::text,
			$3::text), 0))`, key.BaseURL, key.ClientID, key.Username); err != nil {
		release()
		return nil, nil, fmt.Errorf("hold the credential latch: %w", err)
	}
	r, err := latched(ctx, tx, key)
	if err != nil {
		release()
		return nil, nil, err
	}
	return r, release, nil
}

// Latch records the refusal; a refusal already latched for the key stays
// (the first one is what the operator needs to see).
func (l CredentialLatches) Latch(ctx context.Context, key thingspace.CredentialKey, r thingspace.Refusal) error {
	at := r.At
	if at.IsZero() {
		at = time.Now()
	}
	_, err := l.Store.Pool.Exec(ctx, `
		INSERT INTO thingspace_credential_latches
			(base_url, client_id, username, operation, http_status, error_code, error_message, latched_at)
		VALUES ($1, $2, $3, $4, nullif($5, 0), $6, nullif($7, ''), $8)
		ON CONFLICT (base_url, client_id, username) DO NOTHING`,
		key.BaseURL, key.ClientID, key.Username, r.Op, r.HTTPStatus, r.Code, r.Message, at)
	if err != nil {
		return fmt.Errorf("latch refused credentials: %w", err)
	}
	return nil
}

// Latched returns the refusal latched for the key, or nil.
func (l CredentialLatches) Latched(ctx context.Context, key thingspace.CredentialKey) (*thingspace.Refusal, error) {
	return latched(ctx, l.Store.Pool, key)
}

type latchQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func latched(ctx context.Context, q latchQuerier, key thingspace.CredentialKey) (*thingspace.Refusal, error) {
	var r thingspace.Refusal
	var status *int
	var msg *string
	err := q.QueryRow(ctx, `
		SELECT operation, http_status, error_code, error_message, latched_at FROM thingspace_credential_latches
		WHERE base_url = $1 AND client_id = $2 AND username = $3`,
		key.BaseURL, key.ClientID, key.Username).Scan(&r.Op, &status, &r.Code, &msg, &r.At)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the credential latch: %w", err)
	}
	if status != nil {
		r.HTTPStatus = *status
	}
	if msg != nil {
		r.Message = *msg
	}
	return &r, nil
}

// CredentialLatch is one latched refusal, as an operator sees it.
type CredentialLatch struct {
	Key     thingspace.CredentialKey
	Refusal thingspace.Refusal
}

// ResetCredentialLatches removes every latched refusal, so that the
// workers try their credentials again (once, together: the first refusal
// latches again), and writes the operator's request to the audit log
// (m2m_log, service operator) with who asked, why and what was cleared.
// It returns what it removed.
func (s *Store) ResetCredentialLatches(ctx context.Context, by, reason string, only ...thingspace.CredentialKey) ([]CredentialLatch, error) {
	var cleared []CredentialLatch
	// only: those credentials (one tenant's); none: every latch.
	baseURLs, clientIDs, usernames := make([]string, len(only)), make([]string, len(only)), make([]string, len(only))
	for i, k := range only {
		baseURLs[i], clientIDs[i], usernames[i] = k.BaseURL, k.ClientID, k.Username
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			DELETE FROM thingspace_credential_latches
			WHERE cardinality($1::text[]) = 0
				OR (base_url, client_id, username) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
			RETURNING base_url, client_id, username, operation, coalesce(http_status, 0), error_code,
				coalesce(error_message, ''), latched_at`, baseURLs, clientIDs, usernames)
		if err != nil {
			return err
		}
		cleared, err = scanRows(rows, func(r pgx.Row) (CredentialLatch, error) {
			var c CredentialLatch
			err := r.Scan(&c.Key.BaseURL, &c.Key.ClientID, &c.Key.Username, &c.Refusal.Op, &c.Refusal.HTTPStatus,
				&c.Refusal.Code, &c.Refusal.Message, &c.Refusal.At)
			return c, err
		})
		if err != nil {
			return err
		}
		type item struct {
			Op        string    `json:"operation"`
			Code      string    `json:"code"`
			LatchedAt time.Time `json:"latched_at"`
		}
		items := make([]item, 0, len(cleared))
		for _, c := range cleared {
			items = append(items, item{Op: c.Refusal.Op, Code: c.Refusal.Code, LatchedAt: c.Refusal.At})
		}
		body, err := json.Marshal(map[string]any{"by": by, "reason": reason, "cleared": items})
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO m2m_log (service, operation, request_body, outcome, error_message)
			VALUES ('operator', 'credentials-reset', $1, 'ok', $2)`,
			string(body), by+": "+reason)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reset the credential latches: %w", err)
	}
	return cleared, nil
}
