package setup

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/payloadcrypt"
)

// With keys configured, the clients of every process encrypt their
// payloads and failures; without, they keep the SDK's converters.
func TestClientOptionsEncryptWhenKeysAreConfigured(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var opts client.Options
	require.NoError(t, useCodec(&opts, &config.Config{}, quiet))
	require.Nil(t, opts.DataConverter)
	require.Nil(t, opts.FailureConverter)

	dir := t.TempDir()
	_, err := payloadcrypt.WriteNewKey(dir, "k1")
	require.NoError(t, err)
	cfg := &config.Config{Temporal: config.Temporal{Codec: config.TemporalCodec{KeysDir: dir, CurrentKeyID: "k1"}}}
	require.NoError(t, useCodec(&opts, cfg, quiet))
	p, err := opts.DataConverter.ToPayload(map[string]string{"msisdn": "15555550123"})
	require.NoError(t, err)
	require.Equal(t, payloadcrypt.Encoding, string(p.Metadata[converter.MetadataEncoding]))
	require.NotContains(t, string(p.Data), "15555550123")
	f := opts.FailureConverter.ErrorToFailure(errors.New("REQUEST_FAILED. Device not found"))
	require.NotContains(t, f.String(), "Device not found")

	cfg.Temporal.Codec.CurrentKeyID = "k2"
	err = useCodec(&client.Options{}, cfg, quiet)
	require.ErrorContains(t, err, "temporal.codec")
	require.ErrorContains(t, err, `"k2"`)
}
