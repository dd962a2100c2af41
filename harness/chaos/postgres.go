package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/harness/stack"
)

// Postgres is a PostgreSQL cluster of the run's own: restarting it must
// not disturb the machine's other users (tests running beside the chaos
// run, go test's parallel packages), so the run never touches the shared
// server.
type Postgres struct {
	Port int
	dir  string // data directory, owned by the postgres user
	bin  string
	log  string
}

// pgBinDir finds the PostgreSQL server binaries: $TSBULK_CHAOS_PG_BIN,
// else the newest /usr/lib/postgresql/<version>/bin (15 on this machine).
func pgBinDir() (string, error) {
	if d := os.Getenv("TSBULK_CHAOS_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("the PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql, or set TSBULK_CHAOS_PG_BIN")
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// StartPostgres creates a cluster in dir/pg (initdb as the postgres user,
// trust authentication on 127.0.0.1 only), starts it on a free port and
// creates the database tsbulk.
func StartPostgres(ctx context.Context, dir string) (*Postgres, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the chaos run starts a private PostgreSQL cluster as the postgres user (runuser), which needs root")
	}
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return nil, errors.New("runuser (util-linux) is needed to run PostgreSQL as the postgres user")
	}
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the postgres user does not exist (apt-get install postgresql creates it): %w", err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	// The run directory is root's: postgres must be able to reach its own
	// directory inside it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	p := &Postgres{dir: filepath.Join(dir, "pg"), bin: bin}
	p.log = filepath.Join(p.dir, "postgres.log")
	if err := os.Mkdir(p.dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(p.dir, uid, gid); err != nil {
		return nil, err
	}
	if out, err := p.asPostgres(ctx, "initdb", "-D", filepath.Join(p.dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if p.Port, err = stack.FreePort(); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("\n# chaos run\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"+
		"max_connections = 300\nshared_buffers = 128MB\nfsync = on\nlog_min_messages = warning\n", p.Port, p.dir)
	f, err := os.OpenFile(filepath.Join(p.dir, "data", "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE tsbulk"); err != nil {
		return nil, err
	}
	return p, nil
}

// URL is the URL of a database of the cluster.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

func (p *Postgres) asPostgres(ctx context.Context, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, tool)}, args...)...)
	cmd.Dir = p.dir
	return cmd.CombinedOutput()
}

func (p *Postgres) start(ctx context.Context) error {
	out, err := p.asPostgres(ctx, "pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", p.log, "-w", "-t", "120", "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s", err, out)
	}
	return nil
}

// Crash stops the server at once (immediate shutdown: no checkpoint, the
// next start recovers from the WAL), as a crash or an OOM kill would.
func (p *Postgres) Crash(ctx context.Context) error {
	out, err := p.asPostgres(ctx, "pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Start starts the server again after Crash.
func (p *Postgres) Start(ctx context.Context) error { return p.start(ctx) }

// Stop shuts the cluster down for good.
func (p *Postgres) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = p.asPostgres(ctx, "pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "fast", "-w", "stop")
}

// Log is the server's log file.
func (p *Postgres) Log() string { return p.log }
