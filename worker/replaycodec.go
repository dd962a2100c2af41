package main

import (
	"errors"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/reflect/protoreflect"

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

func hasEncryptedPayload(hist *historypb.History) bool {
	found := false
	eachPayload(hist.ProtoReflect(), func(p *commonpb.Payload) {
		found = found || string(p.GetMetadata()[converter.MetadataEncoding]) == payloadcrypt.Encoding
	})
	return found
}

const (
	payloadName          protoreflect.FullName = "temporal.api.common.v1.Payload"
	searchAttributesName protoreflect.FullName = "temporal.api.common.v1.SearchAttributes"
)

// eachPayload calls f with every payload under m but those of search
// attributes (never encrypted: the server indexes them).
func eachPayload(m protoreflect.Message, f func(*commonpb.Payload)) {
	switch m.Descriptor().FullName() {
	case searchAttributesName:
		return
	case payloadName:
		f(m.Interface().(*commonpb.Payload))
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				eachPayload(v.List().Get(i).Message(), f)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				eachPayload(mv.Message(), f)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			eachPayload(v.Message(), f)
		}
		return true
	})
}
