package process

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/nettest"
	"github.com/iot-ops/tsbulk/payloadcrypt"
)

// The codec server runs from its settings, decodes with the keys of the
// workers, and stops with its context.
func TestRunCodecServer(t *testing.T) {
	dir := t.TempDir()
	_, err := payloadcrypt.WriteNewKey(dir, "k1")
	require.NoError(t, err)
	codec, err := payloadcrypt.LoadDir(dir, "k1")
	require.NoError(t, err)
	addr := nettest.FreeAddr(t)
	const token = "codec-server-token-0123456789abcdef"
	cfg := &config.Config{
		Temporal:    config.Temporal{Codec: config.TemporalCodec{KeysDir: dir, CurrentKeyID: "k1"}},
		CodecServer: config.CodecServer{Listen: addr, Token: token, AllowedOrigin: "http://localhost:8233"},
	}
	require.NoError(t, cfg.ValidateCodecServer())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunCodecServer(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond)

	plain, err := converter.GetDefaultDataConverter().ToPayload("15555550123")
	require.NoError(t, err)
	enc, err := codec.Encode([]*commonpb.Payload{plain})
	require.NoError(t, err)
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: "http://" + addr,
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+token)
			return nil
		},
	})
	dec, err := remote.Decode(enc)
	require.NoError(t, err)
	var msisdn string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(dec[0], &msisdn))
	require.Equal(t, "15555550123", msisdn)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the codec server did not stop with its context")
	}
}
