package process

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/payloadcrypt"
	"github.com/iot-ops/tsbulk/setup"
)

// RunCodecServer serves the codec server (`worker codec-server`) until ctx
// ends: the Temporal Web UI and `temporal --codec-endpoint` decode the
// encrypted payloads of histories through it, with the workers' keys.
// cfg must have passed ValidateCodecServer.
func RunCodecServer(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	codec, err := setup.PayloadCodec(cfg)
	if err != nil {
		return err
	}
	if codec == nil {
		return fmt.Errorf("codec server: temporal.codec.keys_dir is not set")
	}
	s := cfg.CodecServer
	h := (&payloadcrypt.Server{Codec: codec, Token: s.Token.Reveal(), AllowedOrigin: s.AllowedOrigin,
		Logger: logger}).Handler()
	srv := &http.Server{Addr: s.Listen, Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	if s.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("codec_server.tls_cert_file: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	logger.Info("codec server", "currentKey", codec.CurrentKeyID(), "keys", codec.KeyIDs(),
		"allowedOrigin", s.AllowedOrigin, "tls", srv.TLSConfig != nil)
	return serve(ctx, srv, logger, "codec server")
}
