package db_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/thingspace"
)

func credentialKey(user string) thingspace.CredentialKey {
	return thingspace.CredentialKey{BaseURL: "https://thingspace.example", ClientID: "client-1", Username: user}
}

func TestCredentialLatches(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)
	latches := st.CredentialLatches()

	t.Run("the first refusal stays latched; other credentials are not", func(t *testing.T) {
		key := credentialKey("first-stays")
		r, err := latches.Latched(ctx, key)
		require.NoError(t, err)
		require.Nil(t, r)

		at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		require.NoError(t, latches.Latch(ctx, key, thingspace.Refusal{Op: "login", HTTPStatus: 401,
			Code: "UnAuthorized", Message: "wrong password", At: at}))
		require.NoError(t, latches.Latch(ctx, key, thingspace.Refusal{Op: "oauth", HTTPStatus: 400,
			Code: "invalid_client", Message: "later"}))
		r, err = latches.Latched(ctx, key)
		require.NoError(t, err)
		require.NotNil(t, r)
		require.Equal(t, "login", r.Op)
		require.Equal(t, 401, r.HTTPStatus)
		require.Equal(t, "UnAuthorized", r.Code)
		require.Equal(t, "wrong password", r.Message)
		require.True(t, at.Equal(r.At))

		for _, other := range []thingspace.CredentialKey{
			credentialKey("someone-else"),
			{BaseURL: key.BaseURL, ClientID: "client-2", Username: key.Username},
			{BaseURL: "https://other.example", ClientID: key.ClientID, Username: key.Username},
		} {
			r, err := latches.Latched(ctx, other)
			require.NoError(t, err)
			require.Nil(t, r, "%+v", other)
		}
	})

	t.Run("a refusal without status or message reads back as zero values, latched now", func(t *testing.T) {
		key := credentialKey("bare")
		before := time.Now().Add(-time.Minute)
		require.NoError(t, latches.Latch(ctx, key, thingspace.Refusal{Op: "oauth", Code: "invalid_client"}))
		r, err := latches.Latched(ctx, key)
		require.NoError(t, err)
		require.Zero(t, r.HTTPStatus)
		require.Empty(t, r.Message)
		require.True(t, r.At.After(before))
	})

	t.Run("Hold returns what is latched", func(t *testing.T) {
		key := credentialKey("held-latched")
		require.NoError(t, latches.Latch(ctx, key, thingspace.Refusal{Op: "login", Code: "Locked"}))
		r, release, err := latches.Hold(ctx, key)
		require.NoError(t, err)
		defer release()
		require.NotNil(t, r)
		require.Equal(t, "Locked", r.Code)
	})

	t.Run("one holder at a time per key; other keys do not wait", func(t *testing.T) {
		key := credentialKey("serial")
		_, hold, err := latches.Hold(ctx, key)
		require.NoError(t, err)
		// Released on every path: a transaction left open would keep the
		// store from closing.
		release := sync.OnceFunc(hold)
		defer release()

		_, releaseOther, err := latches.Hold(ctx, credentialKey("not-serial"))
		require.NoError(t, err)
		releaseOther()

		got := make(chan error, 1)
		go func() {
			_, release2, err := latches.Hold(ctx, key)
			if err == nil {
				release2()
			}
			got <- err
		}()
		select {
		case err := <-got:
			t.Fatalf("a second Hold did not wait for the first to be released (err %v)", err)
		case <-time.After(300 * time.Millisecond):
		}
		release()
		select {
		case err := <-got:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("the second Hold still waits after the first was released")
		}
	})

	t.Run("a Hold waiting past its context gives up", func(t *testing.T) {
		key := credentialKey("gives-up")
		_, release, err := latches.Hold(ctx, key)
		require.NoError(t, err)
		defer release()
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, release2, err := latches.Hold(short, key)
		if err == nil {
			release2()
		}
		require.ErrorContains(t, err, "hold the credential latch")
	})

	// Workers starting together with wrong credentials: each holds the
	// latch, authenticates only when nothing is latched and latches the
	// refusal. Exactly one of them tries.
	t.Run("workers starting together: exactly one authenticates", func(t *testing.T) {
		key := credentialKey("together")
		var tried atomic.Int32
		errs := dbtest.Race(6, func(int) error {
			refused, release, err := latches.Hold(ctx, key)
			if err != nil {
				return err
			}
			defer release()
			if refused != nil {
				return nil
			}
			tried.Add(1)
			time.Sleep(20 * time.Millisecond) // the login request
			return latches.Latch(ctx, key, thingspace.Refusal{Op: "login", HTTPStatus: 401, Code: "UnAuthorized"})
		})
		for _, err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, int32(1), tried.Load())
	})
}

// Resetting clears every latch of the database: the test has a database of
// its own.
func TestResetCredentialLatches(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)
	latches := st.CredentialLatches()

	cleared, err := st.ResetCredentialLatches(ctx, "alice", "nothing latched")
	require.NoError(t, err)
	require.Empty(t, cleared)

	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, user := range []string{"u1", "u2"} {
		require.NoError(t, latches.Latch(ctx, credentialKey(user), thingspace.Refusal{Op: "login", HTTPStatus: 401,
			Code: "UnAuthorized", Message: "no", At: at}))
	}
	cleared, err = st.ResetCredentialLatches(ctx, "bob", "password corrected")
	require.NoError(t, err)
	require.Len(t, cleared, 2)
	users := map[string]bool{}
	for _, c := range cleared {
		users[c.Key.Username] = true
		require.Equal(t, "UnAuthorized", c.Refusal.Code)
		require.Equal(t, 401, c.Refusal.HTTPStatus)
		require.True(t, at.Equal(c.Refusal.At))
	}
	require.Equal(t, map[string]bool{"u1": true, "u2": true}, users)
	for _, user := range []string{"u1", "u2"} {
		r, err := latches.Latched(ctx, credentialKey(user))
		require.NoError(t, err)
		require.Nil(t, r)
	}

	var body, msg string
	require.NoError(t, st.Pool.QueryRow(ctx, `SELECT request_body, error_message FROM m2m_log
		WHERE service = 'operator' AND operation = 'credentials-reset' ORDER BY id DESC LIMIT 1`).Scan(&body, &msg))
	require.Equal(t, "bob: password corrected", msg)
	var audit struct {
		By, Reason string
		Cleared    []struct {
			Operation, Code string
			LatchedAt       time.Time `json:"latched_at"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(body), &audit))
	require.Equal(t, "bob", audit.By)
	require.Equal(t, "password corrected", audit.Reason)
	require.Len(t, audit.Cleared, 2)
	for _, c := range audit.Cleared {
		require.Equal(t, "login", c.Operation)
		require.Equal(t, "UnAuthorized", c.Code)
		require.True(t, at.Equal(c.LatchedAt))
	}
	require.Equal(t, 2, queryInt(t, st, `SELECT count(*) FROM m2m_log WHERE operation = 'credentials-reset'`),
		"every reset is audited, one that cleared nothing too")
}
