// Package dbtest gives tests a real, empty PostgreSQL database of their own.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/db"
)

// AdminURL is the server tests create their databases on:
// TSBULK_TEST_DATABASE_URL, else the local server with trust auth.
func AdminURL() string {
	if u := os.Getenv("TSBULK_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewURL creates a fresh database and returns its URL; the database is
// dropped when the test ends.
func NewURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatalf("PostgreSQL is needed for this test and is not reachable at %s: %v\n"+
			"start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", AdminURL(), err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "tsbulk_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(AdminURL())
	if err != nil {
		t.Fatalf("bad admin URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// New creates a fresh migrated database and returns a store on it.
func New(t testing.TB) *db.Store {
	t.Helper()
	u := NewURL(t)
	if err := db.Migrate(context.Background(), u); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	st, err := db.Open(context.Background(), u, 8)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}
