package main

import (
	"context"
	"errors"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/payloadcrypt"
	"github.com/iot-ops/tsbulk/setup"
)

// errNeedsKeys: the history's payloads are encrypted and no keys are
// configured. Said as such rather than as the nondeterminism the replay
// would report.
var errNeedsKeys = errors.New("its payloads are encrypted: give the workers' keys " +
	"(temporal.codec.keys_dir and temporal.codec.current_key_id, in --config or TSBULK_TEMPORAL_CODEC_*)")

// needsKeys reports whether a replay failed for want of the keys, not on
// the workflow code.
func needsKeys(err error) bool { return errors.Is(err, errNeedsKeys) }

// replayer replays as the worker of the configuration does.
type replayer struct {
	worker.WorkflowReplayer
	decrypts bool
}

// newReplayer is a replayer reading payloads as the worker of the
// configuration at path ("" = the environment only) does: with its
// payload encryption keys (temporal.codec.*) when it has them, without
// otherwise. Histories in clear replay either way.
func newReplayer(path string) (*replayer, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	codec, err := setup.PayloadCodec(cfg)
	if err != nil {
		return nil, err
	}
	var opts worker.WorkflowReplayerOptions
	if codec != nil {
		opts.DataConverter = codec.DataConverter()
		opts.FailureConverter = codec.FailureConverter()
	}
	r, err := worker.NewWorkflowReplayerWithOptions(opts)
	if err != nil {
		return nil, err
	}
	return &replayer{WorkflowReplayer: r, decrypts: codec != nil}, nil
}

// ReplayWorkflowHistory refuses a history it could not read.
func (r *replayer) ReplayWorkflowHistory(logger log.Logger, hist *historypb.History) error {
	if !r.decrypts && hasEncryptedPayload(hist) {
		return errNeedsKeys
	}
	return r.WorkflowReplayer.ReplayWorkflowHistory(logger, hist)
}

// hasEncryptedPayload reports whether any payload of hist is encrypted
// (search attributes never are: the server indexes them).
func hasEncryptedPayload(hist *historypb.History) bool {
	found := false
	_ = proxy.VisitPayloads(context.Background(), hist, proxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range ps {
				found = found || string(p.GetMetadata()[converter.MetadataEncoding]) == payloadcrypt.Encoding
			}
			return ps, nil
		},
	})
	return found
}
