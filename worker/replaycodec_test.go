package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/iot-ops/tsbulk/payloadcrypt"
)

// withKeys points the configuration (the environment, as a deployment
// may) at a new keys folder holding key k1, current.
func withKeys(t *testing.T) *payloadcrypt.Codec {
	t.Helper()
	dir := t.TempDir()
	_, err := payloadcrypt.WriteNewKey(dir, "k1")
	require.NoError(t, err)
	t.Setenv("TSBULK_TEMPORAL_CODEC_KEYS_DIR", dir)
	t.Setenv("TSBULK_TEMPORAL_CODEC_CURRENT_KEY_ID", "k1")
	c, err := payloadcrypt.LoadDir(dir, "k1")
	require.NoError(t, err)
	return c
}

// The histories recorded in clear still replay once encryption is on:
// workflows started before it was turned on keep running.
func TestReplayRecordedHistoryWithKeys(t *testing.T) {
	withKeys(t)
	files, err := filepath.Glob(filepath.Join(historiesDir, "*.json"))
	require.NoError(t, err)
	var out, errOut bytes.Buffer
	code := replay(context.Background(), []string{"--dir", historiesDir}, &out, &errOut)
	require.Equal(t, 0, code, "%s%s", out.String(), errOut.String())
	require.Equal(t, len(files), countLines(out.String(), "OK: "), out.String())
}

// A history whose payloads are encrypted (as a worker with the keys
// writes it) replays with the keys, and not without them.
func TestReplayEncryptedHistory(t *testing.T) {
	codec := withKeys(t)
	dir := t.TempDir()
	for _, name := range []string{"activate-callback-billing.json", "bulkchange.json", "activate-device-not-found.json"} {
		encryptHistoryFile(t, codec, filepath.Join(historiesDir, name), filepath.Join(dir, name))
	}

	var out, errOut bytes.Buffer
	code := replay(context.Background(), []string{"--dir", dir}, &out, &errOut)
	require.Equal(t, 0, code, "%s%s", out.String(), errOut.String())
	require.Equal(t, 3, countLines(out.String(), "OK: "), out.String())

	t.Setenv("TSBULK_TEMPORAL_CODEC_KEYS_DIR", "")
	t.Setenv("TSBULK_TEMPORAL_CODEC_CURRENT_KEY_ID", "")
	out.Reset()
	errOut.Reset()
	code = replay(context.Background(), []string{"--dir", dir}, &out, &errOut)
	require.Equal(t, 1, code, "without the keys the payloads cannot be read: %s", out.String())
	require.Equal(t, 0, countLines(out.String(), "OK: "), out.String())
	require.Equal(t, 3, countLines(out.String(), "CANNOT READ "), out.String())
	require.Contains(t, out.String(), "its payloads are encrypted: give the workers' keys")
	require.NotContains(t, out.String(), "NONDETERMINISM", "a missing key is not a finding about the code")
}

// A keys folder that cannot be loaded stops the replay before it says
// anything about the workflow code.
func TestReplayWithBrokenKeys(t *testing.T) {
	withKeys(t)
	t.Setenv("TSBULK_TEMPORAL_CODEC_CURRENT_KEY_ID", "k9")
	var out, errOut bytes.Buffer
	require.Equal(t, 1, replay(context.Background(), []string{"--dir", historiesDir}, &out, &errOut))
	require.Contains(t, errOut.String(), `"k9"`)
	require.Empty(t, out.String())
}

// encryptHistoryFile writes the recorded history at src to dst with every
// payload encrypted, as the server would hold it had the worker run with
// the codec. Search attributes stay clear, as the SDK writes them.
func encryptHistoryFile(t *testing.T, codec *payloadcrypt.Codec, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	require.NoError(t, err)
	defer f.Close()
	hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err)
	n := encryptPayloads(t, codec, hist)
	require.Positive(t, n, "%s holds payloads", src)
	b, err := protojson.Marshal(hist)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, 0o600))
}

// encryptPayloads encrypts, in place, every payload of hist but those of
// search attributes, as the SDK's codec interceptor would, and counts them.
func encryptPayloads(t *testing.T, codec *payloadcrypt.Codec, hist *historypb.History) int {
	n := 0
	require.NoError(t, proxy.VisitPayloads(context.Background(), hist, proxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			n += len(ps)
			return codec.Encode(ps)
		},
	}))
	return n
}
