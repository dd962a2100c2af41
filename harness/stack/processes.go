package stack

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/config"
)

// Credentials are what the simulators accept and the product is given:
// test values, or a run's random ones so that finding one in a log proves
// a leak.
type Credentials struct {
	TSClientID, TSClientSecret, TSUsername, TSPassword, Account string
	CallbackUsername, CallbackPassword                          string
	RevioLogin, RevioClientCode, RevioPassword, RevioKey        string
}

// ProcessOptions configure StartProcesses.
type ProcessOptions struct {
	// BinDir holds the built commands (make build); LogDir receives one
	// log file per process.
	BinDir, LogDir string
	Credentials    Credentials
	// Addresses (host:port) of the simulators and the callback receiver;
	// empty picks a free port.
	ThingSpaceAddr, RevioAddr, CallbackAddr string
	// ThingSpaceArgs and RevioArgs are the simulators' other flags
	// (delays, faults, seeds, a device file).
	ThingSpaceArgs, RevioArgs []string
	// Settings are the product's settings by config key, over the ones
	// StartProcesses derives (simulator URLs, credentials, receiver).
	Settings map[string]string
	// Env is the environment of every process; nil is this process's
	// without TSBULK_* variables nor Temporal's environment configuration,
	// so the caller's cannot change the run.
	Env []string
	// Workers is how many worker processes run (at least 1).
	Workers int
	// EmbedReceiver runs the callback receiver inside the first worker
	// instead of as its own process.
	EmbedReceiver bool
	// BeforeProduct runs once the simulators answer and before any process
	// of the product starts: seed devices, set faults.
	BeforeProduct func(ctx context.Context, p *Processes) error
}

// Processes is the product run as separate processes against the
// simulators, as the demo and the chaos suite run it: each one can be
// killed and started again.
type Processes struct {
	ThingSpace, Revio *Proc
	// Receiver is nil when the first worker embeds it.
	Receiver *Proc
	Workers  []*Proc
	// Env is the product's environment: what the worker, the receiver and
	// a starter run against this stack are given.
	Env                                   []string
	ThingSpaceURL, RevioURL, CallbackAddr string
	CallbackPath                          string
	o                                     ProcessOptions
}

// StartProcesses starts the simulators, then the callback receiver,
// registers it with ThingSpace and starts the workers. PostgreSQL and
// Temporal are the caller's: Settings name them.
func StartProcesses(ctx context.Context, o ProcessOptions) (_ *Processes, err error) {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.Env == nil {
		o.Env = withoutProductSettings(os.Environ())
	}
	for _, b := range []string{"worker", "starter", "callback-receiver", "thingspace-simulator", "revio-simulator"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return nil, fmt.Errorf("the product's binaries are needed in %s (make build): %w", o.BinDir, err)
		}
	}
	p := &Processes{o: o, CallbackPath: "/thingspace/callbacks"}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	addrs := []*string{&o.ThingSpaceAddr, &o.RevioAddr, &o.CallbackAddr}
	for _, a := range addrs {
		if *a == "" {
			port, err := FreePort()
			if err != nil {
				return nil, err
			}
			*a = fmt.Sprintf("127.0.0.1:%d", port)
		}
	}
	c := o.Credentials
	p.ThingSpaceURL, p.RevioURL, p.CallbackAddr = "http://"+o.ThingSpaceAddr, "http://"+o.RevioAddr, o.CallbackAddr
	p.ThingSpace = &Proc{Name: "thingspace-simulator", Path: p.bin("thingspace-simulator"), Log: p.logPath("thingspace-simulator"),
		Env: append(o.Env[:len(o.Env):len(o.Env)], "TS_SIM_CLIENT_SECRET="+c.TSClientSecret, "TS_SIM_PASSWORD="+c.TSPassword),
		Args: append([]string{"--listen", o.ThingSpaceAddr, "--client-id", c.TSClientID, "--username", c.TSUsername,
			"--account", c.Account}, o.ThingSpaceArgs...)}
	p.Revio = &Proc{Name: "revio-simulator", Path: p.bin("revio-simulator"), Log: p.logPath("revio-simulator"),
		Env: append(o.Env[:len(o.Env):len(o.Env)], "REVIO_SIM_PASSWORD="+c.RevioPassword, "REVIO_SIM_SUBSCRIPTION_KEY="+c.RevioKey),
		Args: append([]string{"--listen", o.RevioAddr, "--login", c.RevioLogin, "--client-code", c.RevioClientCode},
			o.RevioArgs...)}
	for _, s := range []*Proc{p.ThingSpace, p.Revio} {
		if err := s.Start(); err != nil {
			return nil, err
		}
	}
	for _, addr := range []string{o.ThingSpaceAddr, o.RevioAddr} {
		if err := WaitTCP(addr, time.Minute); err != nil {
			return nil, fmt.Errorf("a simulator did not come up (logs in %s): %w", o.LogDir, err)
		}
	}
	if o.BeforeProduct != nil {
		if err := o.BeforeProduct(ctx, p); err != nil {
			return nil, err
		}
	}

	p.Env = p.productEnv()
	// The deploy's one explicit step; the product's processes only check
	// the schema.
	if err := p.Run(ctx, "migrate", nil, "worker", "migrate"); err != nil {
		return nil, err
	}
	if !o.EmbedReceiver {
		p.Receiver = &Proc{Name: "callback-receiver", Path: p.bin("callback-receiver"), Log: p.logPath("callback-receiver"),
			Env: p.Env}
		if err := p.Receiver.Start(); err != nil {
			return nil, err
		}
	}
	for i := 0; i < o.Workers; i++ {
		name := "worker"
		if o.Workers > 1 {
			name = fmt.Sprintf("worker-%d", i+1)
		}
		env := p.Env
		if i > 0 && o.EmbedReceiver {
			// One receiver: the others would fight for its address.
			env = append(env[:len(env):len(env)], config.EnvName("worker.embed_callback_receiver")+"=false")
		}
		p.Workers = append(p.Workers, &Proc{Name: name, Path: p.bin("worker"), Log: p.logPath(name), Env: env})
		if err := p.Workers[i].Start(); err != nil {
			return nil, err
		}
	}
	if err := WaitTCP(o.CallbackAddr, time.Minute); err != nil {
		return nil, fmt.Errorf("the callback receiver did not come up (logs in %s): %w", o.LogDir, err)
	}
	if err := p.Run(ctx, "register", nil, "callback-receiver", "register"); err != nil {
		return nil, err
	}
	return p, nil
}

// Run runs one of the product's commands to its end against the stack
// (`starter submit ...`, `callback-receiver register`), its output
// appended to the log named name and copied to stdout when not nil.
func (p *Processes) Run(ctx context.Context, name string, stdout io.Writer, command string, args ...string) error {
	f, err := os.OpenFile(p.logPath(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, p.bin(command), args...)
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = f, f
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(f, stdout)
	}
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(p.logPath(name))
		return fmt.Errorf("%s %s: %w\n%s", command, strings.Join(args, " "), err, data)
	}
	return nil
}

// All are the running processes, workers first and simulators last: the
// order to stop them in.
func (p *Processes) All() []*Proc {
	all := append([]*Proc{}, p.Workers...)
	for _, q := range []*Proc{p.Receiver, p.ThingSpace, p.Revio} {
		if q != nil {
			all = append(all, q)
		}
	}
	return all
}

// Stop stops every process, workers first.
func (p *Processes) Stop() {
	for _, q := range p.All() {
		q.Stop(10 * time.Second)
	}
}

// LogPath is the log file of the process (or one-shot command) named name.
func (p *Processes) LogPath(name string) string { return p.logPath(name) }

func (p *Processes) logPath(name string) string { return filepath.Join(p.o.LogDir, name+".log") }

func (p *Processes) bin(name string) string { return filepath.Join(p.o.BinDir, name) }

// productEnv is the environment of the product's processes: the settings
// that point them at the simulators and the receiver, then the caller's.
func (p *Processes) productEnv() []string {
	c := p.o.Credentials
	kv := map[string]string{
		// The simulators answer plain http, allowed only in dev mode.
		"dev":                            "true",
		"thingspace.base_url":            p.ThingSpaceURL,
		"thingspace.client_id":           c.TSClientID,
		"thingspace.client_secret":       c.TSClientSecret,
		"thingspace.username":            c.TSUsername,
		"thingspace.password":            c.TSPassword,
		"thingspace.account":             c.Account,
		"callbacks.enabled":              "true",
		"callbacks.listen":               p.CallbackAddr,
		"callbacks.path":                 p.CallbackPath,
		"callbacks.public_url":           "http://" + p.CallbackAddr + p.CallbackPath,
		"callbacks.username":             c.CallbackUsername,
		"callbacks.password":             c.CallbackPassword,
		"revio.enabled":                  "true",
		"revio.base_url":                 p.RevioURL,
		"revio.login":                    c.RevioLogin,
		"revio.client_code":              c.RevioClientCode,
		"revio.password":                 c.RevioPassword,
		"revio.subscription_key":         c.RevioKey,
		"worker.embed_callback_receiver": fmt.Sprint(p.o.EmbedReceiver),
	}
	for k, v := range p.o.Settings {
		kv[k] = v
	}
	env := p.o.Env[:len(p.o.Env):len(p.o.Env)]
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		env = append(env, config.EnvName(k)+"="+kv[k])
	}
	return env
}

// withoutProductSettings drops TSBULK_* variables from env, and Temporal's
// environment configuration (TEMPORAL_* variables, the TOML file): the
// product's processes would take from it what the run does not set, such
// as the TLS or the API key of the caller's own Temporal.
func withoutProductSettings(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, config.EnvPrefix+"_") && !strings.HasPrefix(kv, "TEMPORAL_") {
			out = append(out, kv)
		}
	}
	return append(out, "TEMPORAL_CONFIG_FILE="+os.DevNull)
}
