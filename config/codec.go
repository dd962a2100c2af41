package config

// Payload encryption (temporal.codec.*) and the codec server
// (codec_server.*): see payloadcrypt and deploy/README.md, "Encrypted
// payloads".

import (
	"net/url"

	"github.com/iot-ops/tsbulk/payloadcrypt"
)

// TemporalCodec turns on the encryption of every payload the processes
// hand to Temporal. Every process that talks to Temporal (worker, callback
// receiver, starter, `worker replay`, the codec server) needs the same
// keys: one without them cannot read what the others wrote.
type TemporalCodec struct {
	// KeysDir holds the keys, one file <id>.key each (32 random bytes in
	// base64); "" leaves payloads in clear. The keys are never settings.
	KeysDir string `mapstructure:"keys_dir"`
	// CurrentKeyID is the key new payloads are encrypted with; the others
	// still decrypt what they encrypted.
	CurrentKeyID string `mapstructure:"current_key_id"`
}

// On reports whether payloads are encrypted.
func (t TemporalCodec) On() bool { return t.KeysDir != "" }

// CodecServer is the codec server (`worker codec-server`) through which
// the Temporal Web UI and `temporal --codec-endpoint` read encrypted
// payloads.
type CodecServer struct {
	Listen string `mapstructure:"listen"`
	// AllowedOrigin is the Web UI's origin (scheme://host[:port]) allowed
	// to call from a browser; "" allows no browser, only the CLI.
	AllowedOrigin string `mapstructure:"allowed_origin"`
	// Token is the bearer token every caller must send
	// (TSBULK_CODEC_SERVER_TOKEN or codec_server.token_file).
	Token Secret `mapstructure:"-"`
	// TLSCertFile and TLSKeyFile (both or neither): serve HTTPS (TLS 1.2
	// at least) instead of behind a proxy that ends TLS.
	TLSCertFile string `mapstructure:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file"`
}

// minCodecTokenLength keeps the codec server's token out of guessing
// range: whoever holds it reads every history in clear.
const minCodecTokenLength = 32

// checkCodec checks the payload encryption settings of any process that
// talks to Temporal, loading the keys so that a missing or malformed key
// file stops the process at start.
func (c *Config) checkCodec(p *problems) {
	k := c.Temporal.Codec
	if k.KeysDir == "" {
		p.need(k.CurrentKeyID == "", "temporal.codec.current_key_id",
			"is set without temporal.codec.keys_dir: name the folder of the keys too")
		return
	}
	if k.CurrentKeyID == "" {
		p.need(false, "temporal.codec.current_key_id",
			"is required with temporal.codec.keys_dir: the id (file name without .key) of the key that encrypts")
		return
	}
	_, err := payloadcrypt.LoadDir(k.KeysDir, k.CurrentKeyID)
	p.need(err == nil, "temporal.codec.keys_dir", "%v", err)
}

// ValidateCodecServer checks what the codec server needs: the keys, a
// token, and where to listen.
func (c *Config) ValidateCodecServer() error {
	var p problems
	p.need(c.Temporal.Codec.On(), "temporal.codec.keys_dir",
		"is required: the codec server decrypts with the workers' keys")
	c.checkCodec(&p)
	s := c.CodecServer
	p.need(s.Listen != "", "codec_server.listen", "is required")
	p.need(len(s.Token.Reveal()) >= minCodecTokenLength, "codec_server.token",
		"is required, at least %d characters (environment or codec_server.token_file; openssl rand -hex 32)",
		minCodecTokenLength)
	if s.AllowedOrigin != "" {
		u, err := url.Parse(s.AllowedOrigin)
		p.need(err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil &&
			u.Path == "" && u.RawQuery == "" && u.Fragment == "",
			"codec_server.allowed_origin",
			"must be an origin as a browser sends it: scheme://host[:port], no path nor trailing slash (e.g. https://temporal-ui.example.com)")
	}
	p.needKeyPair("codec_server.tls_cert_file", s.TLSCertFile, "codec_server.tls_key_file", s.TLSKeyFile,
		"the codec server serves HTTPS")
	return p.err()
}
