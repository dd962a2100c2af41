package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-ops/tsbulk/db"
)

// What each side of a run costs is read from /proc (Linux), so that the
// table can say which process was the bottleneck: the Temporal server, the
// worker, PostgreSQL, or this process (the simulators and the receiver).

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux the product runs on.
const clockTick = 10 * time.Millisecond

// procCPU is the user+system CPU time a process has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// procRSS is a process's resident memory now, in KiB.
func procRSS(pid int) (int64, error) { return procStatusKB(pid, "VmRSS:") }

// procPeakRSS is the most resident memory the process has had so far, in
// KiB: a peak between two samples shows in the next one.
func procPeakRSS(pid int) (int64, error) { return procStatusKB(pid, "VmHWM:") }

func procStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// hostCPU reads the machine's busy and total CPU time (all cores) from
// /proc/stat.
func hostCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest time is already counted in user time
			break
		}
		total += time.Duration(n) * clockTick
		if i != 3 && i != 4 { // idle, iowait
			busy += time.Duration(n) * clockTick
		}
	}
	return busy, total
}

// loadAvg is the 1-, 5- and 15-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// listenerPID finds the process listening on a local TCP port: the
// Temporal server, whether the stack's dev server or one started apart.
func listenerPID(port int) (int, error) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d", port)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, d := range dirs {
		fds, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(d, fd.Name())); err == nil && inodes[link] {
				return strconv.Atoi(filepath.Base(filepath.Dir(d)))
			}
		}
	}
	return 0, fmt.Errorf("no process found for the listener on port %d", port)
}

// pgCPU adds up the CPU time of the PostgreSQL backends serving some
// databases. Backends come and go with the connection pools, so they are
// sampled every second and each one's last reading is kept.
type pgCPU struct {
	pool *pgxpool.Pool
	dbs  []string
	mu   sync.Mutex
	last map[int]time.Duration // pid → CPU at its last reading
	gone time.Duration         // CPU of backends that have exited
	stop chan struct{}
	done chan struct{}
}

func newPGCPU(pool *pgxpool.Pool, dbs ...string) *pgCPU {
	p := &pgCPU{pool: pool, dbs: dbs, last: map[int]time.Duration{}, stop: make(chan struct{}), done: make(chan struct{})}
	p.sample()
	go func() {
		defer close(p.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.sample()
			}
		}
	}()
	return p
}

func (p *pgCPU) sample() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pids, err := db.BackendPIDs(ctx, p.pool, p.dbs)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[int]bool{}
	for _, pid := range pids {
		if c, err := procCPU(pid); err == nil {
			p.last[pid] = c
			seen[pid] = true
		}
	}
	for pid, c := range p.last {
		if !seen[pid] {
			p.gone += c
			delete(p.last, pid)
		}
	}
}

// total is the CPU used so far by every backend seen (counted from each
// one's start: compare two readings).
func (p *pgCPU) total() time.Duration {
	p.sample()
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.gone
	for _, c := range p.last {
		t += c
	}
	return t
}

func (p *pgCPU) close() {
	close(p.stop)
	<-p.done
}

// meter reads, at the start and the end of a phase of the run, the CPU of
// every side and of the whole host.
type meter struct {
	serverPID int
	pgProduct *pgCPU // the product's database
	pgServer  *pgCPU // the Temporal server's databases, when it uses PostgreSQL
}

type reading struct {
	at                  time.Time
	server, self        time.Duration
	pgProduct, pgServer time.Duration
	hostBusy, hostTotal time.Duration
	load                string
}

func (m *meter) read() reading {
	r := reading{at: time.Now(), load: loadAvg()}
	if m.serverPID > 0 {
		r.server, _ = procCPU(m.serverPID)
	}
	r.self, _ = procCPU(os.Getpid())
	if m.pgProduct != nil {
		r.pgProduct = m.pgProduct.total()
	}
	if m.pgServer != nil {
		r.pgServer = m.pgServer.total()
	}
	r.hostBusy, r.hostTotal = hostCPU()
	return r
}

// cost is what a phase used: the difference of two readings.
type cost struct {
	wall                time.Duration
	server, self        time.Duration
	pgProduct, pgServer time.Duration
	hostBusy            float64 // cores busy on average, all processes of the host
	loadStart, loadEnd  string
}

func costBetween(a, b reading) cost {
	c := cost{wall: b.at.Sub(a.at), server: b.server - a.server, self: b.self - a.self,
		pgProduct: b.pgProduct - a.pgProduct, pgServer: b.pgServer - a.pgServer, loadStart: a.load, loadEnd: b.load}
	if t := b.hostTotal - a.hostTotal; t > 0 {
		c.hostBusy = float64(b.hostBusy-a.hostBusy) / float64(t) * float64(numCPU())
	}
	return c
}

func numCPU() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 1
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "cpu") && !strings.HasPrefix(line, "cpu ") {
			n++
		}
	}
	return max(n, 1)
}
