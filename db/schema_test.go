package db_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

// Open never migrates: a fresh database is refused with advice, a migrated
// one opens, and a schema newer than the build (an older binary during a
// rollout) is refused by Open and by Migrate with a message, not a tern
// error.
func TestOpenChecksTheSchemaAndMigrateIsTheOnlyStep(t *testing.T) {
	ctx := context.Background()
	url := dbtest.NewURL(t)

	_, err := db.Open(ctx, url, 2)
	var se *db.SchemaError
	require.True(t, errors.As(err, &se), "fresh database: %v", err)
	require.Equal(t, db.SchemaError{Have: 0, Want: db.SchemaVersion()}, *se)
	require.Contains(t, err.Error(), "worker migrate")

	require.NoError(t, db.Migrate(ctx, url))
	require.NoError(t, db.Migrate(ctx, url), "a second migration is a no-op")
	st, err := db.Open(ctx, url, 2)
	require.NoError(t, err)
	defer st.Close()

	_, err = st.Pool.Exec(ctx, `UPDATE schema_version SET version = version + 1`)
	require.NoError(t, err)
	_, err = db.Open(ctx, url, 2)
	require.True(t, errors.As(err, &se), "newer schema: %v", err)
	require.Equal(t, db.SchemaVersion()+1, se.Have)
	require.Contains(t, err.Error(), "older than the schema")
	err = db.Migrate(ctx, url)
	require.True(t, errors.As(err, &se), "migrate with an older build: %v", err)
}
