package stack

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one of the processes a harness runs (the product's, a simulator,
// the Temporal server), which it can kill and start again. Every start
// appends to the same log file, after a marker line.
type Proc struct {
	Name string
	Path string
	Args []string
	Env  []string
	Log  string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	killed   bool // the run stopped it: its exit is expected
	starts   int
	surprise int // exits the run did not cause
}

// Start starts the process.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.Name)
	}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "=== harness: start %d of %s at %s\n", p.starts, p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that a terminal's Ctrl-C reaches only the
	// harness, which then stops everything in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.killed = cmd, done, false
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		p.mu.Lock()
		if !p.killed {
			p.surprise++
		}
		if p.cmd == cmd {
			p.cmd = nil
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL, 0) }

// Stop asks the process to end (SIGTERM) and kills it after grace.
func (p *Proc) Stop(grace time.Duration) { p.signal(syscall.SIGTERM, grace) }

func (p *Proc) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.killed = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		select {
		case <-done:
			return
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// Running reports whether the process runs.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Pid is the process id, 0 when it does not run.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// UnexpectedExits counts the times the process ended without the run
// stopping it.
func (p *Proc) UnexpectedExits() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.surprise
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1. The port is
// free when this returns; a process started soon after can bind it.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePortBase finds a frontend port for scripts/temporal-postgres.sh whose derived
// ports (+1, +2, +6, +10 and -300..-294) are all free. Below 32768: the
// server stores its ports in a smallint column (cluster_membership) and
// exits at start with a larger one; that also keeps clear of the kernel's
// ephemeral range, where other processes' ports come and go.
func FreePortBase() (int, error) {
	for range 200 {
		p := 12000 + mrand.IntN(20000)
		ok := true
		for _, d := range []int{0, 1, 2, 6, 10, -300, -299, -298, -294} {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+d))
			if err != nil {
				ok = false
				break
			}
			_ = ln.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("no free set of ports for the Temporal server")
}

// WaitTCP waits until something accepts connections on addr.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("nothing listens on %s after %s", addr, timeout), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
