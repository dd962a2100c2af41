package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/iot-ops/tsbulk/process"
)

// progressSample is one reading of a parent's progress query, with the
// worker processes' resident memory at that moment.
type progressSample struct {
	at       time.Duration
	done     int
	inFlight int
	runs     int
	rssKB    int64 // all worker processes together
}

type sampling struct {
	stopc   chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []progressSample
}

// startSampling reads the parent's progress every 2 seconds (in flight is
// averaged over these) and prints it every 15.
func startSampling(name string, total int, start time.Time, query func(context.Context) (progressSample, bool), procs []*workerProc) *sampling {
	sp := &sampling{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sp.done)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		lastPrint := time.Now()
		for {
			select {
			case <-sp.stopc:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ps, ok := query(ctx)
			cancel()
			if !ok {
				continue
			}
			ps.at = time.Since(start)
			var peakKB int64
			for _, p := range procs {
				if kb, err := procRSS(p.cmd.Process.Pid); err == nil {
					ps.rssKB += kb
				}
				if kb, err := procPeakRSS(p.cmd.Process.Pid); err == nil {
					peakKB = max(peakKB, kb)
				}
			}
			sp.mu.Lock()
			sp.samples = append(sp.samples, ps)
			sp.mu.Unlock()
			if time.Since(lastPrint) >= 15*time.Second {
				lastPrint = time.Now()
				fmt.Printf("  %-7s %6s  %d/%d done, %d in flight, run %d (%.1f devices/s), worker RSS %d MiB (peak so far %d), load %s\n", name,
					ps.at.Round(time.Second), ps.done, total, ps.inFlight, ps.runs, float64(ps.done)/ps.at.Seconds(), ps.rssKB/1024,
					peakKB/1024, loadAvg())
			}
		}
	}()
	return sp
}

func (sp *sampling) stop() []progressSample {
	close(sp.stopc)
	<-sp.done
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.samples
}

// workerProc is a worker run as its own process, so that its memory and
// CPU can be measured apart from the simulators and the server.
type workerProc struct {
	cmd *exec.Cmd
}

type usage struct {
	procs    int
	maxRSSKB int64         // the largest peak of one process
	cpu      time.Duration // all processes together
}

// startWorkers starts o.workers processes of path with args; each writes
// its CPU profile to -cpuprofile's directory when set.
func startWorkers(kind, path string, args []string, env []string, o options) ([]*workerProc, error) {
	var procs []*workerProc
	for i := 1; i <= o.workers; i++ {
		cmd := exec.Command(path, args...)
		cmd.Env = env
		if o.cpuProfileDir != "" {
			cmd.Env = append(append([]string(nil), env...),
				process.CPUProfileEnv+"="+filepath.Join(o.cpuProfileDir, fmt.Sprintf("%s-%d.pprof", kind, i)))
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			stopWorkers(procs)
			return nil, err
		}
		procs = append(procs, &workerProc{cmd: cmd})
	}
	return procs, nil
}

func stopWorkers(procs []*workerProc) usage {
	u := usage{procs: len(procs)}
	for _, w := range procs {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range procs {
		_ = w.cmd.Wait()
		if ru, ok := w.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			u.maxRSSKB = max(u.maxRSSKB, ru.Maxrss)
			u.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return u
}
