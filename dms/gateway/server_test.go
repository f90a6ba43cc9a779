package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certPair is a self-signed certificate for 127.0.0.1 written to files,
// and a pool that trusts it.
type certPair struct {
	certFile, keyFile string
	pool              *x509.CertPool
}

// selfSigned makes an ECDSA P-256 certificate for 127.0.0.1 in t's
// temporary directory.
func selfSigned(t *testing.T) certPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "dms gateway test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := certPair{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	writePEM(t, p.certFile, "CERTIFICATE", der)
	writePEM(t, p.keyFile, "PRIVATE KEY", keyDER)
	p.pool.AddCert(cert)
	return p
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serve starts a Server with c over a handler that answers the protocol
// it was spoken to in, and closes it when the test ends.
func serve(t *testing.T, c ServerConfig) *Server {
	t.Helper()
	c.Addr = "127.0.0.1:0"
	s, err := Serve(c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// client speaks only the protocols set by set, trusting pool (if any).
func client(t *testing.T, pool *x509.CertPool, set func(*http.Protocols)) *http.Client {
	var p http.Protocols
	set(&p)
	tr := &http.Transport{Protocols: &p}
	if pool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// get fetches url with hc and returns the protocol the server saw.
func get(t *testing.T, hc *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestServeClear(t *testing.T) {
	s := serve(t, ServerConfig{})
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("URL %s, Addr %s", s.URL(), s.Addr())
	}

	resp, seen := get(t, client(t, nil, func(p *http.Protocols) { p.SetHTTP1(true) }), s.URL())
	if resp.Proto != "HTTP/1.1" || seen != "HTTP/1.1" {
		t.Fatalf("HTTP/1.1 client: got %s, server saw %s", resp.Proto, seen)
	}
	resp, seen = get(t, client(t, nil, func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }), s.URL())
	if resp.Proto != "HTTP/2.0" || seen != "HTTP/2.0" {
		t.Fatalf("h2c client: got %s, server saw %s", resp.Proto, seen)
	}
}

func TestServeTLS(t *testing.T) {
	pair := selfSigned(t)
	s := serve(t, ServerConfig{CertFile: pair.certFile, KeyFile: pair.keyFile})
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL())
	}

	resp, seen := get(t, client(t, pair.pool, func(p *http.Protocols) { p.SetHTTP2(true) }), s.URL())
	if resp.Proto != "HTTP/2.0" || seen != "HTTP/2.0" || resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("h2 client: got %s (ALPN %q), server saw %s", resp.Proto, resp.TLS.NegotiatedProtocol, seen)
	}
	resp, seen = get(t, client(t, pair.pool, func(p *http.Protocols) { p.SetHTTP1(true) }), s.URL())
	if resp.Proto != "HTTP/1.1" || seen != "HTTP/1.1" || resp.TLS == nil {
		t.Fatalf("HTTP/1.1 client: got %s, server saw %s", resp.Proto, seen)
	}

	// A client that does not trust the certificate is refused.
	if _, err := http.Get(s.URL()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an untrusting client got %v, want a certificate error", err)
	}
	// Clear HTTP on the TLS port is no way around it.
	if resp, err := http.Get("http://" + s.Addr()); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("clear HTTP on the TLS port: %s", resp.Status)
		}
	}
}

func TestServeTLSConfigErrors(t *testing.T) {
	a, b := selfSigned(t), selfSigned(t)
	for _, c := range []struct {
		conf ServerConfig
		says string
	}{
		{ServerConfig{CertFile: a.certFile}, "without its key file"},
		{ServerConfig{KeyFile: a.keyFile}, "without its certificate file"},
		{ServerConfig{CertFile: a.certFile, KeyFile: b.keyFile}, "private key does not match public key"},
		{ServerConfig{CertFile: a.keyFile, KeyFile: a.certFile}, "tls:"},
		{ServerConfig{CertFile: filepath.Join(t.TempDir(), "none.pem"), KeyFile: a.keyFile}, "no such file"},
	} {
		c.conf.Addr = "127.0.0.1:0"
		s, err := Serve(c.conf, http.NotFoundHandler())
		if err == nil {
			s.Close(context.Background())
			t.Fatalf("%+v: served", c.conf)
		}
		if !strings.Contains(err.Error(), c.says) {
			t.Fatalf("%+v: error %q does not say %q", c.conf, err, c.says)
		}
	}
}

func TestServeListenError(t *testing.T) {
	s := serve(t, ServerConfig{})
	if _, err := Serve(ServerConfig{Addr: s.Addr()}, http.NotFoundHandler()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("a taken address: %v", err)
	}
}

// TestServeCloseWaits: Close lets a request in flight finish.
func TestServeCloseWaits(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s, err := Serve(ServerConfig{Addr: "127.0.0.1:0"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	}))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(s.URL())
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		got <- string(body)
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- s.Close(context.Background()) }()
	close(release)
	if body := <-got; body != "done" {
		t.Fatalf("request in flight got %q", body)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
