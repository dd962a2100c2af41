package setup

import (
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/payloadcrypt"
)

// PayloadCodec is the payload encryption the configuration turns on
// (temporal.codec.*), nil when it is off.
func PayloadCodec(cfg *config.Config) (*payloadcrypt.Codec, error) {
	k := cfg.Temporal.Codec
	if !k.On() {
		return nil, nil
	}
	c, err := payloadcrypt.LoadDir(k.KeysDir, k.CurrentKeyID)
	if err != nil {
		return nil, fmt.Errorf("temporal.codec: %w", err)
	}
	return c, nil
}

// useCodec gives a client's options the encrypting data and failure
// converters when the configuration turns payload encryption on. The
// worker inherits them from its client.
func useCodec(opts *client.Options, cfg *config.Config, logger *slog.Logger) error {
	c, err := PayloadCodec(cfg)
	if err != nil || c == nil {
		return err
	}
	opts.DataConverter = c.DataConverter()
	opts.FailureConverter = c.FailureConverter()
	logger.Info("temporal payloads encrypted", "currentKey", c.CurrentKeyID(), "keys", c.KeyIDs())
	return nil
}
