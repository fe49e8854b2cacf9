package apiops_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func newCert(t *testing.T, name string, parent *testCert, configure func(*x509.Certificate)) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	configure(tmpl)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCert{cert: cert, key: key, der: der}
}

func (c *testCert) writePEM(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	keyDER, _ := x509.MarshalECPrivateKey(c.key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestMutualTLS runs the client against the simulator behind TLS that trusts only a
// private CA and requires a client certificate, as APIOps behind mTLS would.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCert(t, "test CA", nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage = x509.KeyUsageCertSign
	})
	server := newCert(t, "apiops", ca, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	client := newCert(t, "apiops-worker", ca, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	caFile, _ := ca.writePEM(t, dir, "ca")
	clientCert, clientKey := client.writePEM(t, dir, "client")

	seed := loadSeed(t)
	srv := httptest.NewUnstartedServer(simulator.New(seed))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{server.der}, PrivateKey: server.key}},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	srv.StartTLS()
	defer srv.Close()
	req := exampleCommand(t, "credential.truststore.set").APIRequest()

	withCert, err := apiops.New(srv.URL, apiops.StaticToken(seed.Token), apiops.WithCAFile(caFile), apiops.WithClientCertificate(clientCert, clientKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := withCert.Do(context.Background(), req); err != nil {
		t.Fatalf("with CA and client certificate: %v", err)
	}
	withoutCert, _ := apiops.New(srv.URL, apiops.StaticToken(seed.Token), apiops.WithCAFile(caFile))
	if _, err := withoutCert.Do(context.Background(), req); err == nil {
		t.Error("the server accepted a client without a certificate")
	}
	systemRoots, _ := apiops.New(srv.URL, apiops.StaticToken(seed.Token), apiops.WithClientCertificate(clientCert, clientKey))
	if _, err := systemRoots.Do(context.Background(), req); err == nil {
		t.Error("the client trusted a private CA it was not given")
	}
}
