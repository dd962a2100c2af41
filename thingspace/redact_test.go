package thingspace

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func samplePPU() PlaceOfUse {
	return PlaceOfUse{
		CustomerName: CustomerName{FirstName: "Zelda", LastName: "Quixotewright"},
		Address: Address{AddressLine1: "742 Evergreen Terrace", City: "Springfieldia", State: "OR",
			Zip: "97475", Country: "USA", EmailAddress: "zelda@example.org"},
	}
}

// TestNothingSecretLeaks drives every kind of call through a server that
// also echoes secrets back in error messages, then greps everything the
// client exposes: Observer exchanges, error strings and log output.
func TestNothingSecretLeaks(t *testing.T) {
	f := newFake(t)
	const cbPassword = "cb-listener-pass-987"
	var sessionSeen string
	f.route(http.MethodPost, pathActivate, okRequestID("req-a"))
	f.route(http.MethodPut, pathContactInfo, func(w http.ResponseWriter, r *http.Request) {
		// A server that echoes credentials and PPU in its error message.
		sessionSeen = r.Header.Get("VZ-M2M-Token")
		m2mError(
			w,
			http.StatusBadRequest,
			"UnifiedWebService.INPUT_INVALID.Address",
			"bad address 742 Evergreen Terrace for token "+r.Header.Get(
				"VZ-M2M-Token",
			)+" "+strings.TrimPrefix(
				r.Header.Get("Authorization"),
				"Bearer ",
			),
		)
	})
	base := "/api/m2m/v1/callbacks/" + testAccount
	f.route(http.MethodPost, base,
		answerJSON(http.StatusOK, map[string]string{"accountName": testAccount, "serviceName": "CarrierService"}))
	f.route(http.MethodGet, base, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(
			w,
			http.StatusOK,
			[]map[string]string{
				{"serviceName": "CarrierService", "url": "https://x", "username": "u", "password": cbPassword},
			},
		)
	})
	f.route(http.MethodPost, pathList, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("session " + r.Header.Get("VZ-M2M-Token") + " rejected"))
	})

	rec := &recorder{}
	var logs bytes.Buffer
	c := newTestClient(t, f, rec, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	var errs []error
	_, err := c.Activate(ctx, ActivateRequest{Devices: oneDevice(), PrimaryPlaceOfUse: ptr(samplePPU())})
	require.NoError(t, err)
	_, err = c.UpdateContactInfo(ctx, ContactInfoRequest{Devices: oneDevice(), PrimaryPlaceOfUse: samplePPU()})
	require.Error(t, err)
	errs = append(errs, err)
	require.NoError(
		t,
		c.RegisterCallback(
			ctx,
			"",
			CallbackRegistration{Name: CarrierServiceCallback, URL: "https://x", Username: "u", Password: cbPassword},
		),
	)
	_, err = c.ListCallbacks(ctx, "")
	require.NoError(t, err)
	_, err = c.ListDevices(ctx, ListRequest{})
	require.Error(t, err)
	errs = append(errs, err)
	require.NoError(t, c.Logout(ctx))

	bad := newTestClient(t, f, rec, func(cfg *Config) { cfg.Password = "another-wrong-password" })
	errs = append(errs, bad.CheckAuth(ctx))
	badOAuth := newTestClient(t, f, rec, func(cfg *Config) { cfg.ClientSecret = "another-wrong-secret" })
	errs = append(errs, badOAuth.CheckAuth(ctx))

	require.NotEmpty(t, sessionSeen)
	secretValues := []string{
		testClientSecret, testPassword, "another-wrong-password", "another-wrong-secret", cbPassword,
		base64.StdEncoding.EncodeToString([]byte(testClientID + ":" + testClientSecret)),
		"access-token-0001", sessionSeen, "session-0002",
		"Zelda", "Quixotewright", "742 Evergreen", "Springfieldia", "zelda@example.org",
	}
	var exposed []string
	xs := rec.all()
	require.NotEmpty(t, xs)
	sawRedaction := false
	for _, x := range xs {
		exposed = append(exposed, x.Op, x.Path, string(x.RequestBody), string(x.ResponseBody), x.Code, x.Err)
		sawRedaction = sawRedaction || bytes.Contains(x.RequestBody, []byte(Redacted)) ||
			bytes.Contains(x.ResponseBody, []byte(Redacted))
	}
	assert.True(t, sawRedaction)
	for _, e := range errs {
		require.Error(t, e)
		exposed = append(exposed, e.Error())
	}
	exposed = append(exposed, logs.String())
	all := strings.Join(exposed, "\n")
	for _, s := range secretValues {
		assert.NotContains(t, all, s)
	}

	// The redacted bodies are still useful for the audit.
	for _, x := range xs {
		switch x.Op {
		case OpLogin:
			if x.StatusCode == http.StatusOK {
				assert.JSONEq(t, `{"username":"`+testUsername+`","password":"[REDACTED]"}`, string(x.RequestBody))
				assert.JSONEq(t, `{"sessionToken":"[REDACTED]"}`, string(x.ResponseBody))
			}
		case OpOAuth:
			assert.Equal(t, "grant_type=client_credentials", string(x.RequestBody))
		case OpActivate:
			var body map[string]any
			require.NoError(t, json.Unmarshal(x.RequestBody, &body))
			assert.Equal(t, Redacted, body["primaryPlaceOfUse"])
			assert.Equal(t, testAccount, body["accountName"])
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestRedactJSON(t *testing.T) {
	in := `{"z":1,"access_token":"abc","nested":{"Password":{"x":1},"list":[{"sessionToken":"s"},2,"str"]},
	"extendedAttributes":[{"key":"PrimaryPlaceOfUseFirstName","value":"Zed"},{"key":"SkuNumber","value":"SKU1"}],
	"primaryPlaceOfUse":{"customerName":{"firstName":"Zed"}},"a":null}`
	out := string(RedactJSON([]byte(in)))
	assert.Equal(
		t,
		`{"z":1,"access_token":"[REDACTED]","nested":{"Password":"[REDACTED]","list":[{"sessionToken":"[REDACTED]"},2,"str"]},`+
			`"extendedAttributes":[{"key":"PrimaryPlaceOfUseFirstName","value":"[REDACTED]"},{"key":"SkuNumber","value":"SKU1"}],`+
			`"primaryPlaceOfUse":"[REDACTED]","a":null}`,
		out,
		"member order kept",
	)
	// encoding/json reads "paſſword" (long s) as password: so does the
	// redaction.
	assert.Equal(t, `{"paſſword":"[REDACTED]"}`, string(RedactJSON([]byte(`{"paſſword":"s3cret"}`))))
	assert.Equal(t, "not json", string(RedactJSON([]byte("not json"))))
	assert.Equal(t, `{"broken":`, string(RedactJSON([]byte(`{"broken":`))))
	red, err := url.QueryUnescape(string(redactForm([]byte("grant_type=client_credentials&token=tok123"))))
	require.NoError(t, err)
	assert.Contains(t, red, "token=[REDACTED]")
	assert.Contains(t, red, "grant_type=client_credentials")
	assert.NotContains(t, red, "tok123")
}

func TestObservedBodiesAreTruncated(t *testing.T) {
	s := newSecrets(testPassword)
	big := `{"devices":"` + strings.Repeat("x", 100<<10) + testPassword + `"}`
	out := s.observedBody([]byte(big), "application/json")
	assert.Len(t, out, MaxObservedBody)
	assert.True(t, bytes.HasSuffix(out, []byte(truncatedMark)))
	small := s.observedBody([]byte(`{"msg":"`+testPassword+`"}`), "")
	assert.Equal(
		t,
		`{"msg":"[REDACTED]"}`,
		string(small),
		"known secret values are scrubbed even outside sensitive keys",
	)
}

func TestFaultTextDropsTheRepeatedCategory(t *testing.T) {
	assert.Equal(t, "Device not found", FaultText("REQUEST_FAILED. Device not found"))
	assert.Equal(t, "Invalid device state", FaultText("INPUT_INVALID: Invalid device state"))
	assert.Equal(t, "Device is already active", FaultText("Device is already active"))
	assert.Equal(t, "REQUEST_FAILED", FaultText("REQUEST_FAILED"), "nothing after the category: kept")
}
