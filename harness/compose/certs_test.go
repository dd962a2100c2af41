package compose

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// generate runs a copy of deploy/temporal/certs/generate.sh in dir (it
// writes beside itself), so that the repository's own certificates are
// left alone.
func generate(t *testing.T, dir string, args ...string) {
	t.Helper()
	script, err := os.ReadFile(filepath.Join(repoRoot(t), certsDir, "generate.sh"))
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(dir, "generate.sh")
	if err := os.WriteFile(copied, script, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", append([]string{copied}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("generate.sh %v: %v\n%s", args, err, out)
	}
}

// TestGeneratedCertificatesServeMutualTLS runs generate.sh and uses what it
// writes as the override does: the server certificate on a TLS listener
// that requires client certificates of the CA, dialled by the name the
// containers verify (temporal) and by the published port's (localhost,
// 127.0.0.1), with the client certificate and with the server's own (the
// server presents it to itself between its services and from its
// healthcheck).
func TestGeneratedCertificatesServeMutualTLS(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed (apt-get install openssl): deploy/temporal/certs/generate.sh, which this test runs, needs it")
	}
	dir := t.TempDir()
	generate(t, dir)

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// Exactly these: no CA key, no request or extension file left over.
	want := append([]string{"generate.sh"}, generatedFiles(t)...)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("generate.sh left %v, want %v", names, want)
	}
	for _, f := range generatedFiles(t) {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		// The containers read them as uid 1000 (Temporal) and 10001 (tsbulk).
		if info.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", f, info.Mode().Perm())
		}
	}

	read := func(f string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pair := func(name string) tls.Certificate {
		c, err := tls.X509KeyPair(read(name+".pem"), read(name+".key"))
		if err != nil {
			t.Fatalf("%s.pem and %s.key: %v", name, name, err)
		}
		return c
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(read("ca.pem")) {
		t.Fatal("ca.pem holds no certificate")
	}
	server, client := pair("server"), pair("client")

	serverConfig := &tls.Config{
		Certificates: []tls.Certificate{server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cas,
	}
	for _, c := range []struct {
		what       string
		serverName string
		cert       *tls.Certificate
		ok         bool
	}{
		{"a container with the client certificate", "temporal", &client, true},
		{"the host, by name", "localhost", &client, true},
		{"the host, by address", "127.0.0.1", &client, true},
		{"the server's own services", "temporal", &server, true},
		{"a client without a certificate", "temporal", nil, false},
		{"a name the certificate does not have", "temporal.example", &client, false},
	} {
		t.Run(c.what, func(t *testing.T) {
			clientConfig := &tls.Config{RootCAs: cas, ServerName: c.serverName}
			if c.cert != nil {
				clientConfig.Certificates = []tls.Certificate{*c.cert}
			}
			if err := exchange(t, serverConfig, clientConfig); (err == nil) != c.ok {
				t.Errorf("connection: %v, want success %v", err, c.ok)
			}
		})
	}

	// The client certificate cannot stand in for the server.
	leaf, err := x509.ParseCertificate(client.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cas, DNSName: "temporal"}); err == nil {
		t.Error("client.pem verifies as a server certificate for temporal")
	}

	// Run again: the set stays; --force replaces it.
	ca := read("ca.pem")
	generate(t, dir)
	if !bytes.Equal(read("ca.pem"), ca) {
		t.Error("generate.sh without --force replaced the certificates")
	}
	generate(t, dir, "--force")
	if bytes.Equal(read("ca.pem"), ca) {
		t.Error("generate.sh --force kept the old CA")
	}
}

// exchange opens a TLS connection on loopback and has the server send one
// byte: what either side refused comes back as an error. (With TLS 1.3 the
// client's handshake ends before the server has checked its certificate,
// so only the read tells.)
func exchange(t *testing.T, serverConfig, clientConfig *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if conn.(*tls.Conn).Handshake() == nil {
			_, _ = conn.Write([]byte{1})
		}
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), clientConfig)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadFull(conn, make([]byte, 1))
	return err
}
