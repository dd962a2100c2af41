package monitoring

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

type dtoFamily = dto.MetricFamily

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// repoRoot is the repository: go test runs in harness/monitoring.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}
