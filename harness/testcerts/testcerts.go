// Package testcerts makes the certificates of the tests of TLS to Temporal:
// a CA, a server certificate for 127.0.0.1 and localhost, a client
// certificate, and a client certificate of another CA that the server must
// not trust. Nothing here is for production: the keys are written
// unprotected and live a day.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ClientName is the common name of the trusted client certificate.
const ClientName = "tsbulk-worker"

// Files are the PEM files written by Write, all in Dir.
type Files struct {
	Dir string
	// CA signed the server and client certificates.
	CA                    string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	// UntrustedCert and UntrustedKey are a client certificate signed by
	// another CA, with the same name as the trusted one.
	UntrustedCert, UntrustedKey string
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Write creates the certificates in dir.
func Write(dir string) (Files, error) {
	f := Files{
		Dir: dir, CA: filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
		UntrustedCert: filepath.Join(dir, "untrusted.pem"), UntrustedKey: filepath.Join(dir, "untrusted-key.pem"),
	}
	ca, err := newCA("tsbulk test CA", f.CA)
	if err != nil {
		return f, err
	}
	other, err := newCA("tsbulk untrusted test CA", "")
	if err != nil {
		return f, err
	}
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := ca.issue(server, f.ServerCert, f.ServerKey); err != nil {
		return f, err
	}
	if err := ca.issue(clientTemplate(), f.ClientCert, f.ClientKey); err != nil {
		return f, err
	}
	if err := other.issue(clientTemplate(), f.UntrustedCert, f.UntrustedKey); err != nil {
		return f, err
	}
	return f, nil
}

func clientTemplate() *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: ClientName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// newCA makes a self-signed CA, its certificate written to certPath
// unless that is "".
func newCA(name, certPath string) (*issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	tpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if err := validity(tpl); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if certPath != "" {
		if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
			return nil, err
		}
	}
	return &issuer{cert: cert, key: key}, nil
}

// issue signs tpl with a new key and writes the certificate and the key.
func (ca *issuer) issue(tpl *x509.Certificate, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("key of %s: %w", tpl.Subject.CommonName, err)
	}
	tpl.KeyUsage = x509.KeyUsageDigitalSignature
	if err := validity(tpl); err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("certificate of %s: %w", tpl.Subject.CommonName, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("key of %s: %w", tpl.Subject.CommonName, err)
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(keyPath, "PRIVATE KEY", pkcs8)
}

// validity gives tpl a random serial number and a day of validity, from
// an hour ago (clocks of processes on one machine agree, but not to the
// second).
func validity(tpl *x509.Certificate) error {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return fmt.Errorf("serial number: %w", err)
	}
	tpl.SerialNumber = serial
	tpl.NotBefore = time.Now().Add(-time.Hour)
	tpl.NotAfter = time.Now().Add(24 * time.Hour)
	return nil
}

func writePEM(path, kind string, der []byte) error {
	b := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
