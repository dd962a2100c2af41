package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/payloadcrypt"
)

func keysDir(t *testing.T, ids ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, id := range ids {
		_, err := payloadcrypt.WriteNewKey(dir, id)
		require.NoError(t, err)
	}
	return dir
}

func codecYAML(dir, current string) string {
	return workerYAML + "temporal:\n  codec:\n    keys_dir: " + dir + "\n    current_key_id: \"" + current + "\"\n"
}

// Payload encryption is read from the file or the environment, and every
// process that talks to Temporal checks its keys at start.
func TestCodecSettings(t *testing.T) {
	withSecrets(t)
	dir := keysDir(t, "2026-01", "2026-07")
	cfg := loadYAML(t, codecYAML(dir, "2026-01"))
	require.Equal(t, TemporalCodec{KeysDir: dir, CurrentKeyID: "2026-01"}, cfg.Temporal.Codec)
	require.True(t, cfg.Temporal.Codec.On())
	require.NoError(t, cfg.ValidateWorker())
	require.NoError(t, cfg.ValidateStarter())

	t.Setenv("TSBULK_TEMPORAL_CODEC_CURRENT_KEY_ID", "2026-07")
	require.Equal(t, "2026-07", loadYAML(t, codecYAML(dir, "2026-01")).Temporal.Codec.CurrentKeyID,
		"the environment overrides the file")

	t.Setenv("TSBULK_TEMPORAL_CODEC_CURRENT_KEY_ID", "2027-01")
	err := loadYAML(t, codecYAML(dir, "2026-01")).ValidateWorker()
	require.ErrorContains(t, err, "temporal.codec.keys_dir (TSBULK_TEMPORAL_CODEC_KEYS_DIR)")
	require.ErrorContains(t, err, `the current key "2027-01" is not among the keys (2026-01, 2026-07)`)
	t.Setenv("TSBULK_TEMPORAL_CODEC_CURRENT_KEY_ID", "")

	require.False(t, loadYAML(t, workerYAML).Temporal.Codec.On(), "off by default")
	requireBothRefuse(t, loadYAML(t, codecYAML(dir, "")), "temporal.codec.current_key_id")
	requireBothRefuse(t, loadYAML(t, codecYAML("", "2026-01")), "temporal.codec.current_key_id")
	requireBothRefuse(t, loadYAML(t, codecYAML(filepath.Join(dir, "missing"), "2026-01")), "temporal.codec.keys_dir")

	bad := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bad, "k.key"), []byte("not-a-key"), 0o600))
	err = loadYAML(t, codecYAML(bad, "k")).ValidateWorker()
	require.ErrorContains(t, err, filepath.Join(bad, "k.key"))
	require.NotContains(t, err.Error(), "not-a-key")
}

const codecToken = "0123456789abcdef0123456789abcdef"

func codecServerConfig(t *testing.T, extra string) *Config {
	t.Helper()
	return loadYAML(t, "temporal:\n  codec:\n    keys_dir: "+keysDir(t, "k1")+"\n    current_key_id: k1\n"+extra)
}

// The codec server's token is a secret: from a file or the environment,
// never the configuration file, and long enough not to be guessed.
func TestCodecServerSettings(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(codecToken+"\n"), 0o600))
	cfg := codecServerConfig(t, "codec_server:\n  token_file: "+tokenFile+
		"\n  allowed_origin: https://temporal-ui.example.com\n")
	require.NoError(t, cfg.ValidateCodecServer())
	require.Equal(t, codecToken, cfg.CodecServer.Token.Reveal())
	require.Equal(t, "127.0.0.1:9093", cfg.CodecServer.Listen)
	require.Equal(t, "https://temporal-ui.example.com", cfg.CodecServer.AllowedOrigin)

	_, err := Load(writeYAML(t, "codec_server:\n  token: "+codecToken+"\n"))
	require.ErrorContains(t, err, "codec_server.token must not be in the config file")
	require.ErrorContains(t, err, "TSBULK_CODEC_SERVER_TOKEN or codec_server.token_file")

	t.Setenv("TSBULK_CODEC_SERVER_TOKEN", "short")
	require.ErrorContains(t, codecServerConfig(t, "").ValidateCodecServer(), "codec_server.token (TSBULK_CODEC_SERVER_TOKEN)")
	t.Setenv("TSBULK_CODEC_SERVER_TOKEN", codecToken)
	require.NoError(t, codecServerConfig(t, "").ValidateCodecServer())

	for _, origin := range []string{"https://temporal-ui.example.com/", "temporal-ui.example.com",
		"https://temporal-ui.example.com/ui", "ftp://temporal-ui.example.com"} {
		err := codecServerConfig(t, "codec_server:\n  allowed_origin: "+origin+"\n").ValidateCodecServer()
		require.ErrorContains(t, err, "codec_server.allowed_origin", origin)
	}

	err = codecServerConfig(t, "codec_server:\n  tls_cert_file: /nonexistent.pem\n").ValidateCodecServer()
	require.ErrorContains(t, err, "codec_server.tls_cert_file")

	cfg, err = Load("")
	require.NoError(t, err)
	err = cfg.ValidateCodecServer()
	require.ErrorContains(t, err, "temporal.codec.keys_dir")
	require.ErrorContains(t, err, "decrypts with the workers' keys")
}
