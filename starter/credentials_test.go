package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/thingspace"
)

// The operator's reset of refused ThingSpace credentials: it removes the
// latch every worker checks before a login, says what it removed, and is
// in the audit log with who asked and why.
func TestCredentialsResetClearsTheLatchAndIsAudited(t *testing.T) {
	ctx := context.Background()
	latches := st.Store.CredentialLatches()
	key := thingspace.CredentialKey{BaseURL: "https://ts.example", ClientID: "client", Username: "user"}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	require.NoError(t, latches.Latch(ctx, key, thingspace.Refusal{
		Op: thingspace.OpLogin, HTTPStatus: 400, Code: "UnifiedWebService.REQUEST_FAILED.InvalidCredentials", At: at,
	}))

	code, out, errOut := starter(t, "credentials-reset", "--as", "bob", "--reason", "password corrected")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "reset: the M2M login (username or password) refused at 2026-03-01T12:00:00Z "+
		"(UnifiedWebService.REQUEST_FAILED.InvalidCredentials)")
	r, err := latches.Latched(ctx, key)
	require.NoError(t, err)
	require.Nil(t, r, "the latch is gone")
	var by, reason string
	require.NoError(t, st.Store.Pool.QueryRow(ctx, `SELECT request_body::jsonb->>'by', error_message FROM m2m_log
		WHERE service = 'operator' AND operation = 'credentials-reset' ORDER BY id DESC LIMIT 1`).Scan(&by, &reason))
	require.Equal(t, "bob", by)
	require.Equal(t, "bob: password corrected", reason)

	code, out, _ = starter(t, "credentials-reset", "--as", "bob")
	require.Equal(t, 0, code)
	require.Contains(t, out, "nothing to reset")
}

// --tenant resets that tenant's credentials only: another tenant's
// refusal stays latched until it is corrected too.
func TestCredentialsResetOfOneTenant(t *testing.T) {
	ctx := context.Background()
	latches := st.Store.CredentialLatches()
	ts := st.Config.ThingSpace
	mine := thingspace.CredentialKey{BaseURL: ts.BaseURL, ClientID: ts.ClientID, Username: ts.Username}
	other := thingspace.CredentialKey{BaseURL: "https://ts.example", ClientID: "other-client", Username: "other-user"}
	for _, k := range []thingspace.CredentialKey{mine, other} {
		require.NoError(t, latches.Latch(ctx, k, thingspace.Refusal{Op: thingspace.OpLogin, HTTPStatus: 400,
			Code: "UnifiedWebService.REQUEST_FAILED.InvalidCredentials", At: time.Now()}))
	}
	t.Cleanup(func() { _, _ = st.Store.ResetCredentialLatches(ctx, "test", "cleanup") })

	code, out, errOut := starter(t, "credentials-reset", "--tenant", "default", "--as", "bob")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "reset: the M2M login (username or password) refused at")
	r, err := latches.Latched(ctx, mine)
	require.NoError(t, err)
	require.Nil(t, r, "the default tenant's latch is gone")
	r, err = latches.Latched(ctx, other)
	require.NoError(t, err)
	require.NotNil(t, r, "another tenant's stays")

	code, out, _ = starter(t, "credentials-reset", "--tenant", "default", "--as", "bob")
	require.Equal(t, 0, code)
	require.Contains(t, out, "tenant default's ThingSpace credentials were not latched as refused")
	code, _, errOut = starter(t, "credentials-reset", "--tenant", "nope", "--as", "bob")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `tenant "nope" is not configured`)
}
