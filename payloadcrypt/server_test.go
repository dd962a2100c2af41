package payloadcrypt

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const (
	testToken = "codec-token-for-tests-0123456789abcdef"
	webUI     = "https://temporal-ui.example.com"
)

func startServer(t *testing.T, c *Codec) string {
	t.Helper()
	srv := httptest.NewServer((&Server{Codec: c, Token: testToken, AllowedOrigin: webUI, MaxBodyBytes: 1 << 20}).Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// remote is the SDK's client of a codec server, as the CLI's
// --codec-endpoint and --codec-auth use it.
func remote(url, token string) converter.PayloadCodec {
	return converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: url,
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("X-Namespace", "default")
			if token != "" {
				r.Header.Set("Authorization", "Bearer "+token)
			}
			return nil
		},
	})
}

// What /encode produced, /decode reads back; the encoded payloads are the
// codec's own, readable by a worker holding the keys.
func TestServerEncodeDecode(t *testing.T) {
	_, keys := newKeys(t, "k1")
	c := newCodec(t, keys, "k1")
	rc := remote(startServer(t, c), testToken)

	enc, err := rc.Encode([]*commonpb.Payload{plain(t)})
	require.NoError(t, err)
	require.Equal(t, Encoding, string(enc[0].Metadata[converter.MetadataEncoding]))
	requireOpaque(t, enc[0], secretsOf(sample)...)
	local, err := c.Decode(enc)
	require.NoError(t, err)
	require.True(t, proto.Equal(plain(t), local[0]))

	dec, err := rc.Decode(append(enc, plain(t)))
	require.NoError(t, err)
	require.Len(t, dec, 2)
	var got confirmation
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(dec[0], &got))
	require.Equal(t, sample, got)
	require.True(t, proto.Equal(plain(t), dec[1]), "a plain payload comes back as it was")

	// The mount point does not matter: only the last part of the path.
	rc = remote(startServer(t, c)+"/codec/default", testToken)
	dec, err = rc.Decode(enc)
	require.NoError(t, err)
	require.True(t, proto.Equal(plain(t), dec[0]))
}

func TestServerRefusesWithoutToken(t *testing.T) {
	_, keys := newKeys(t, "k1")
	c := newCodec(t, keys, "k1")
	url := startServer(t, c)
	enc, err := c.Encode([]*commonpb.Payload{plain(t)})
	require.NoError(t, err)
	body := payloadsJSON(t, enc)

	for name, auth := range map[string]string{
		"none":           "",
		"wrong token":    "Bearer " + strings.Replace(testToken, "0", "1", 1),
		"token prefix":   "Bearer " + testToken[:10],
		"other scheme":   "Basic " + testToken,
		"token alone":    testToken,
		"token and more": "Bearer " + testToken + "x",
	} {
		t.Run(name, func(t *testing.T) {
			resp := post(t, url+"/decode", body, map[string]string{"Authorization": auth})
			out := readBody(t, resp)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			require.Equal(t, `Bearer realm="codec"`, resp.Header.Get("WWW-Authenticate"))
			require.NotContains(t, out, sample.MSISDN)
			require.NotContains(t, out, "payloads")
		})
	}
	_, err = remote(url, "").Decode(enc)
	require.ErrorContains(t, err, "Unauthorized")

	resp := post(t, url+"/decode", body, map[string]string{"Authorization": "bearer " + testToken})
	out := readBody(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Contains(t, out, `"payloads"`)
}

// The Web UI calls from the browser: the preflight is answered for its
// origin only, and the answer to the POST lets it read the result.
func TestServerCORS(t *testing.T) {
	_, keys := newKeys(t, "k1")
	c := newCodec(t, keys, "k1")
	url := startServer(t, c)

	req, err := http.NewRequest(http.MethodOptions, url+"/decode", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", webUI)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type,x-namespace,authorization")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	readBody(t, resp)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, webUI, resp.Header.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "true", resp.Header.Get("Access-Control-Allow-Credentials"))
	allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"content-type", "x-namespace", "authorization"} {
		require.Contains(t, allowed, h)
	}
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")

	req.Header.Set("Origin", "https://evil.example.com")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	readBody(t, resp)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	enc, err := c.Encode([]*commonpb.Payload{plain(t)})
	require.NoError(t, err)
	resp = post(t, url+"/decode", payloadsJSON(t, enc),
		map[string]string{"Origin": webUI, "Authorization": "Bearer " + testToken, "X-Namespace": "default"})
	out := readBody(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Equal(t, webUI, resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, out, `"payloads"`)

	// Without its token the browser is refused, and can read that it was.
	resp = post(t, url+"/decode", payloadsJSON(t, enc), map[string]string{"Origin": webUI})
	readBody(t, resp)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, webUI, resp.Header.Get("Access-Control-Allow-Origin"))

	// A page of another origin holding the token is refused all the same.
	resp = post(t, url+"/decode", payloadsJSON(t, enc),
		map[string]string{"Origin": "https://evil.example.com", "Authorization": "Bearer " + testToken})
	out = readBody(t, resp)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.NotContains(t, out, "payloads")
}

func TestServerRefusesOtherRequests(t *testing.T) {
	_, keys := newKeys(t, "k1")
	c := newCodec(t, keys, "k1")
	url := startServer(t, c)
	auth := map[string]string{"Authorization": "Bearer " + testToken}

	resp, err := http.Get(url + "/healthz")
	require.NoError(t, err)
	require.Equal(t, "ok\n", readBody(t, resp))
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = http.Get(url + "/decode")
	require.NoError(t, err)
	readBody(t, resp)
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	resp = post(t, url+"/other", `{"payloads":[]}`, auth)
	readBody(t, resp)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	resp = post(t, url+"/decode", `{"payloads": not json`, auth)
	readBody(t, resp)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	big := `{"payloads":[{"data":"` + strings.Repeat("A", 2<<20) + `"}]}`
	resp = post(t, url+"/encode", big, auth)
	readBody(t, resp)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "a body over MaxBodyBytes is not read")

	// A payload of a key the server does not hold is an error, not garbage.
	_, other := newKeys(t, "k2")
	enc, err := newCodec(t, other, "k2").Encode([]*commonpb.Payload{plain(t)})
	require.NoError(t, err)
	resp = post(t, url+"/decode", payloadsJSON(t, enc), auth)
	out := readBody(t, resp)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, out, `unknown encryption key "k2"`)
}

func TestServerNeedsToken(t *testing.T) {
	_, keys := newKeys(t, "k1")
	require.Panics(t, func() { (&Server{Codec: newCodec(t, keys, "k1")}).Handler() })
}

func payloadsJSON(t *testing.T, ps []*commonpb.Payload) string {
	t.Helper()
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
	require.NoError(t, err)
	return string(b)
}

func post(t *testing.T, url, body string, headers map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
