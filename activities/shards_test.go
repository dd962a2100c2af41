package activities_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

func TestCutShards(t *testing.T) {
	sizes := []db.BatchSize{{BatchNo: 1, Devices: 3}, {BatchNo: 2, Devices: 2}, {BatchNo: 3, Devices: 9},
		{BatchNo: 4, Devices: 1}, {BatchNo: 5, Devices: 1}}
	require.Equal(t, []api.Shard{
		{No: 1, FirstBatch: 1, LastBatch: 2, Devices: 5},
		{No: 2, FirstBatch: 3, LastBatch: 3, Devices: 9},
		{No: 3, FirstBatch: 4, LastBatch: 5, Devices: 2},
	}, activities.CutShards(sizes, 5), "a batch larger than a shard is a shard of its own")
}
