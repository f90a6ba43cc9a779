package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
)

// The gateway end-to-end test is issue 12's acceptance: three daemons as
// processes, one of them a gateway over HTTPS that computes nothing, so
// every call crosses the network to a provider chosen by auction. The
// examples/echo module serves an endpoint with an address allowlist, a
// window and a daily quota of 5, behind a trusted proxy (the test plays
// it); switching the function's default revision changes its answer;
// another account's key finds nothing of the first; and a restart of the
// gateway loses neither the quota count nor the accounts.

func TestGatewayEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and a Wasm example and runs three daemons; skipped with -short")
	}
	bin := buildBinary(t)
	echo := buildWasmExample(t, "echo")
	root := t.TempDir()
	homes := []string{filepath.Join(root, "gw"), filepath.Join(root, "p1"), filepath.Join(root, "p2")}
	for _, h := range homes {
		cliOK(t, bin, "init", "--home", h)
	}
	certFile, keyFile, ca := selfSigned(t, root)
	trustLoopback(t, homes[0])
	gwArgs := []string{"--gateway", "127.0.0.1:0", "--gateway-cert", certFile, "--gateway-key", keyFile, "--compute=false"}
	gw := startDaemon(t, bin, homes[0], gwArgs...)
	info := nodeInfo(t, bin, homes[0])
	if !strings.HasPrefix(info.Gateway, "https://127.0.0.1:") {
		t.Fatalf("node info's gateway: %q", info.Gateway)
	}
	p1 := startDaemon(t, bin, homes[1], "--bootstrap", info.Addrs[0])
	p2 := startDaemon(t, bin, homes[2], "--bootstrap", info.Addrs[0])
	waitForPeers(t, bin, homes[0], 2)

	acme := createAccount(t, bin, homes[0], "acme")
	rival := createAccount(t, bin, homes[0], "rival")
	local := []string{"--home", homes[0], "--account", "acme"}
	remote := []string{"--gateway", info.Gateway, "--key", acme, "--ca", ca}
	cliOK(t, bin, append([]string{"function", "deploy", "echo", "--module", echo, "--tag", "team=web"}, local...)...)
	cliOK(t, bin, append([]string{"function", "deploy", "echo", "--module", echo, "--env", "ECHO_PREFIX=v2", "--no-default"}, remote...)...)
	cliOK(t, bin, append([]string{"endpoint", "create", "pub", "--function", "echo", "--allow-ip", "10.0.0.0/8",
		"--window", "daily 00:00-24:00 UTC", "--daily-quota", "5"}, local...)...)
	cliOK(t, bin, append([]string{"endpoint", "create", "private", "--function", "echo", "--auth", "key"}, local...)...)

	hc := h2Client(t, ca)
	var first string
	for i := range 5 {
		status, h, body := callEndpoint(t, hc, info.Gateway+"/e/pub/hello?a=1", "10.1.2.3", "")
		if status != http.StatusOK || !strings.Contains(body, "method: POST\npath: /hello\nquery: a=1\nbody: hi") || h.Get(gateway.HeaderTask) == "" {
			t.Fatalf("call %d through the endpoint: %d %q %v", i+1, status, body, h)
		}
		if i == 0 {
			first = h.Get(gateway.HeaderTask)
		}
	}
	status, h, body := callEndpoint(t, hc, info.Gateway+"/e/pub/hello", "10.1.2.3", "")
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(body, "quota") {
		t.Fatalf("the 6th call: %d %q Retry-After %q", status, body, h.Get("Retry-After"))
	}
	for _, xff := range []string{"203.0.113.9", ""} { // a refused address, and the proxy itself
		if status, _, body := callEndpoint(t, hc, info.Gateway+"/e/pub/", xff, ""); status != http.StatusForbidden || !strings.Contains(body, "allowlist") {
			t.Fatalf("a call from %q: %d %q", xff, status, body)
		}
	}

	invoke := append([]string{"function", "invoke", "echo", "--data", "hi"}, remote...)
	if out := cliOK(t, bin, invoke...); !strings.HasPrefix(out, "method: POST") {
		t.Fatalf("revision 1 answered %q", out)
	}
	cliOK(t, bin, append([]string{"function", "default", "echo", "2"}, local...)...)
	if out := cliOK(t, bin, invoke...); !strings.HasPrefix(out, "v2 method: POST") {
		t.Fatalf("after switching to revision 2: %q", out)
	}

	checkIsolation(t, hc, info.Gateway, rival, first)
	if status, _, _ := callEndpoint(t, hc, info.Gateway+"/e/private/", "", acme); status != http.StatusOK {
		t.Fatalf("the key endpoint with its account's key: %d", status)
	}

	// A restart keeps the quota count, the accounts and the tasks.
	gw.stop(t)
	gw = startDaemon(t, bin, homes[0], append(gwArgs, "--bootstrap", nodeInfo(t, bin, homes[1]).Addrs[0])...)
	info = nodeInfo(t, bin, homes[0])
	waitForPeers(t, bin, homes[0], 2)
	if status, _, _ := callEndpoint(t, hc, info.Gateway+"/e/pub/", "10.1.2.3", ""); status != http.StatusTooManyRequests {
		t.Fatalf("after a restart, the 7th call: %d", status)
	}
	var task gateway.Task
	out := cliOK(t, bin, "task", "show", first, "--gateway", info.Gateway, "--key", acme, "--ca", ca, "-o", "json")
	if err := json.Unmarshal([]byte(out), &task); err != nil || task.State != gateway.TaskCompleted || task.Status != 200 || task.Node == "" || task.Endpoint != "pub" {
		t.Fatalf("after a restart, task %s: %+v, %v", first, task, err)
	}
	invoke = []string{"function", "invoke", "echo", "--data", "hi", "--gateway", info.Gateway, "--key", acme, "--ca", ca}
	if out := cliOK(t, bin, invoke...); !strings.HasPrefix(out, "v2 method: POST") {
		t.Fatalf("after a restart: %q", out)
	}
	for _, d := range []*daemon{p2, p1, gw} {
		d.stop(t)
	}
}

// checkIsolation: rival's key finds none of acme's function, revisions,
// endpoints or tasks, and cannot call or change them.
func checkIsolation(t *testing.T, hc *http.Client, base, rival, task string) {
	t.Helper()
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/functions/echo", ""},
		{"GET", "/v1/functions/echo/revisions", ""},
		{"POST", "/v1/functions/echo/invoke", "hi"},
		{"PUT", "/v1/functions/echo/default", `{"revision":1}`},
		{"PUT", "/v1/functions/echo/tags", `{"tags":{"team":"evil"}}`},
		{"DELETE", "/v1/functions/echo", ""},
		{"GET", "/v1/endpoints/pub", ""},
		{"PUT", "/v1/endpoints/pub", `{"name":"pub","function":"echo"}`},
		{"DELETE", "/v1/endpoints/pub", ""},
		{"GET", "/v1/tasks/" + task, ""},
		{"GET", "/v1/tasks/" + task + "/result", ""},
		{"POST", "/v1/tasks/" + task + "/stop", ""},
		{"POST", "/e/private/", "hi"},
	} {
		status, body := request(t, hc, r.method, base+r.path, r.body, rival)
		if status != http.StatusNotFound {
			t.Errorf("rival %s %s: %d %s", r.method, r.path, status, body)
		}
	}
	for _, path := range []string{"/v1/functions", "/v1/endpoints", "/v1/tasks", "/v1/tags"} {
		if status, body := request(t, hc, "GET", base+path, "", rival); status != http.StatusOK || strings.TrimSpace(body) != "[]" {
			t.Errorf("rival GET %s: %d %s", path, status, body)
		}
	}
}

// buildWasmExample builds examples/NAME for wasip1 and returns its path.
func buildWasmExample(t *testing.T, name string) string {
	t.Helper()
	out, err := buildWasm(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key;
// the certificate is its own CA.
func selfSigned(t *testing.T, dir string) (certFile, keyFile, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dms gateway test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile, certFile
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// trustLoopback makes the home's gateway believe X-Forwarded-For from
// 127.0.0.1: the test is the proxy.
func trustLoopback(t *testing.T, home string) {
	t.Helper()
	path := filepath.Join(home, "config.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), "trusted_proxies: []", "trusted_proxies: [127.0.0.1/32]", 1)
	if edited == string(data) {
		t.Fatalf("%s has no empty trusted_proxies", path)
	}
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
}

// h2Client trusts the CA file and speaks HTTP/2 only.
func h2Client(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// callEndpoint POSTs "hi" as a proxy that saw the caller at xff ("" sends
// no header), with an API key when key is not "".
func callEndpoint(t *testing.T, hc *http.Client, url, xff, key string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Proto != "HTTP/2.0" {
		t.Fatalf("%s answered over %s, want HTTP/2.0", url, resp.Proto)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func request(t *testing.T, hc *http.Client, method, url, body, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func nodeInfo(t *testing.T, bin, home string) api.NodeInfo {
	t.Helper()
	var info api.NodeInfo
	if err := json.Unmarshal([]byte(cliOK(t, bin, "node", "info", "--home", home, "--output", "json")), &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func waitForPeers(t *testing.T, bin, home string, n int) {
	t.Helper()
	eventually(t, 30*time.Second, strconv.Itoa(n)+" peers", func() bool {
		var peers []api.Peer
		out := cliOK(t, bin, "peers", "--home", home, "--output", "json")
		return json.Unmarshal([]byte(out), &peers) == nil && len(peers) >= n
	})
}

// createAccount makes an account through the gateway's local API and
// returns its API key.
func createAccount(t *testing.T, bin, home, name string) string {
	t.Helper()
	var created struct {
		Key gateway.NewKey `json:"key"`
	}
	out := cliOK(t, bin, "account", "create", name, "--home", home, "-o", "json")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Key.Secret == "" {
		t.Fatalf("account create %s -o json: %q, %v", name, out, err)
	}
	return created.Key.Secret
}
