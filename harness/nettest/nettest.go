// Package nettest has the loopback helpers of the tests that start real
// servers and processes: an address to give one, and a GET read whole.
package nettest

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// FreeAddr is a loopback address (127.0.0.1:port) nothing listens on, for
// now: for a server the test is about to start, or a dial that must fail.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("free port %s: %v", addr, err)
	}
	return addr
}

// Get GETs url and returns the answer's status code and body. A request
// that gets no answer, or whose body cannot be read, fails the test.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
