package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

// `worker migrate` brings a fresh database to this build's schema, after
// which the product's processes open it.
func TestWorkerMigrate(t *testing.T) {
	url := dbtest.NewURL(t)
	t.Setenv("TSBULK_DATABASE_URL", url)
	require.Equal(t, 0, migrate(context.Background(), nil))
	st, err := db.Open(context.Background(), url, 2)
	require.NoError(t, err)
	st.Close()

	t.Setenv("TSBULK_DATABASE_URL", "")
	require.Equal(t, 2, migrate(context.Background(), nil), "no database.url")
}
