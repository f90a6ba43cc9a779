package dms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

// newHome creates a node home and returns it with the node's identity.
func newHome(t *testing.T) (string, api.NodeInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	home := filepath.Join(t.TempDir(), "home")
	info, err := Init(ctx, home, InitOptions{BenchDuration: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return home, info
}

// rewriteConfig loads home's config, lets edit change it, and writes it back
// through the config template.
func rewriteConfig(t *testing.T, home string, edit func(*Config)) {
	t.Helper()
	cfg, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	edit(&cfg)
	if err := writeConfig(home, cfg); err != nil {
		t.Fatal(err)
	}
}

// startNode starts the node of home, closed when the test ends.
func startNode(t *testing.T, home string, opts ...Option) *DMS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := New(append([]Option{WithHome(home), WithAPI(""), WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

// testLogger is a node's logger in a test: its warnings and errors go to
// the test's log, which go test prints when the test fails, and nowhere
// once the test is over (a node's last goroutines may log as it closes).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered before the node's Close: runs after it
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// TestAllowlistAdmitsOnlyListedRequesters runs a provider that admits only
// requester A (named by its did:key) and requester B, both without compute:
// B's job fails with the admission reason, A's runs on the provider, and
// B's Accept sent without a bid is refused too.
func TestAllowlistAdmitsOnlyListedRequesters(t *testing.T) {
	providerHome, _ := newHome(t)
	homeA, infoA := newHome(t)
	homeB, infoB := newHome(t)
	rewriteConfig(t, providerHome, func(c *Config) {
		c.Admission = AdmissionConfig{Mode: AdmitAllowlist, Allow: []string{infoA.DID}}
	})
	provider := startNode(t, providerHome)
	a := startNode(t, homeA, WithCompute(false), WithBootstrap(provider.host.Addrs()...))
	b := startNode(t, homeB, WithCompute(false), WithBootstrap(provider.host.Addrs()...))
	for _, d := range []*DMS{a, b} {
		waitFor(t, 20*time.Second, "the provider on the topic", func() bool { return d.host.TopicPeers() >= 1 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	refused := "admission: requester " + infoB.PeerID + " is not on this node's allowlist"
	jobB := runHello(t, ctx, b)
	if jobB.State != types.JobFailed || !strings.Contains(jobB.Reason, refused) {
		t.Fatalf("B's job %s: %q, want it failed with %q", jobB.State, jobB.Reason, refused)
	}
	jobA := runHello(t, ctx, a)
	if jobA.State != types.JobCompleted || jobA.Node != provider.host.ID() {
		t.Fatalf("A's job %s on %q: %q", jobA.State, jobA.Node, jobA.Reason)
	}

	reply, err := (&network{d: b}).Accept(ctx, provider.host.ID(), provider.host.Addrs(),
		&types.Accept{JobID: "j", AllocationID: "a", Resources: types.Resources{CPU: 100, Memory: 1 << 20}})
	if r, ok := reply.(*types.Reject); err != nil || !ok || r.Reason != refused {
		t.Fatalf("B's Accept without a bid: %#v, %v", reply, err)
	}
	t.Logf("B's job: %s", jobB.Reason)
}

func runHello(t *testing.T, ctx context.Context, d *DMS) api.Job {
	t.Helper()
	h, err := d.Submit(ctx, helloSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	job, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func TestAdmissionConfig(t *testing.T) {
	_, info := newHome(t)
	for name, tc := range map[string]struct {
		adm  AdmissionConfig
		want []string // nil: open
		err  string
	}{
		"empty is open": {},
		"open":          {adm: AdmissionConfig{Mode: AdmitOpen}},
		"did and peer id of one node": {
			adm:  AdmissionConfig{Mode: AdmitAllowlist, Allow: []string{info.DID, info.PeerID}},
			want: []string{info.PeerID},
		},
		"nobody":          {adm: AdmissionConfig{Mode: AdmitAllowlist}, want: []string{}},
		"unknown mode":    {adm: AdmissionConfig{Mode: "closed"}, err: `admission.mode: "closed"`},
		"allow when open": {adm: AdmissionConfig{Allow: []string{info.PeerID}}, err: "set mode: allowlist"},
		"bad entry":       {adm: AdmissionConfig{Mode: AdmitAllowlist, Allow: []string{info.PeerID, "alice"}}, err: `admission.allow[1]: "alice" is neither`},
		"bad did":         {adm: AdmissionConfig{Mode: AdmitAllowlist, Allow: []string{"did:key:zNope"}}, err: "admission.allow[0]"},
		"rsa peer id": {
			adm: AdmissionConfig{Mode: AdmitAllowlist, Allow: []string{"QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"}},
			err: "not the PeerID of an Ed25519 key",
		},
	} {
		got, err := tc.adm.PeerIDs()
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: got %v, want an error with %q", name, err, tc.err)
		case tc.err == "" && (err != nil || !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil)):
			t.Errorf("%s: got %v, %v; want %v", name, got, err, tc.want)
		}
	}
}

// TestConfigFileSecurity: the admission and network sections survive the
// config template, and LoadConfig refuses a bad one naming the field.
func TestConfigFileSecurity(t *testing.T) {
	home, info := newHome(t)
	cfg, err := LoadConfig(home)
	if err != nil || cfg.Admission.Mode != AdmitOpen || cfg.Network.PSKFile != "" {
		t.Fatalf("a fresh home: %+v, %v", cfg, err)
	}
	writePSK(t, filepath.Join(home, "swarm.key"))
	rewriteConfig(t, home, func(c *Config) {
		c.Admission = AdmissionConfig{Mode: AdmitAllowlist, Allow: []string{info.DID}}
		c.Network.PSKFile = "swarm.key"
	})
	cfg, err = LoadConfig(home)
	if err != nil || cfg.Admission.Mode != AdmitAllowlist || !slices.Equal(cfg.Admission.Allow, []string{info.DID}) || cfg.Network.PSKFile != "swarm.key" {
		t.Fatalf("after editing: %+v, %v", cfg, err)
	}
	if psk, err := cfg.Network.psk(home); err != nil || len(psk) != 32 {
		t.Fatalf("psk: %d bytes, %v", len(psk), err)
	}

	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"missing psk file": {func(c *Config) { c.Network.PSKFile = "nope.key" }, "network.psk_file"},
		"bad psk file":     {func(c *Config) { c.Network.PSKFile = keyFile }, "not a libp2p pre-shared key file"},
		"bad allowlist":    {func(c *Config) { c.Admission.Allow = []string{"mallory"} }, "admission.allow[0]"},
		"bad mode":         {func(c *Config) { c.Admission.Mode = "closed" }, "admission.mode"},
	} {
		bad := cfg
		tc.edit(&bad)
		if err := writeConfig(home, bad); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(home); err == nil || !strings.Contains(err.Error(), "config.yaml") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming the config file and %q", name, err, tc.want)
		}
	}
}

// writePSK writes a fresh pre-shared key file the way docs/security.md
// tells a user to.
func writePSK(t *testing.T, path string) {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("/key/swarm/psk/1.0.0/\n/base16/\n"+hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPrivateNetworkNodes: two nodes sharing a PSK file join one network
// over TCP; a node asked to listen on QUIC with a PSK refuses to start and
// says why. (p2p's TestPrivateNetwork shows that other keys are kept out.)
func TestPrivateNetworkNodes(t *testing.T) {
	psk := filepath.Join(t.TempDir(), "swarm.key")
	writePSK(t, psk)
	homeA, _ := newHome(t)
	homeB, _ := newHome(t)
	for _, h := range []string{homeA, homeB} {
		rewriteConfig(t, h, func(c *Config) { c.Network.PSKFile = psk })
	}
	d, err := New(WithHome(homeA), WithAPI(""))
	if err != nil {
		t.Fatal(err)
	}
	err = d.Start(context.Background())
	d.Close()
	if err == nil || !strings.Contains(err.Error(), "QUIC") {
		t.Fatalf("starting with a PSK and the default QUIC listen address: %v", err)
	}

	tcp := WithListen("/ip4/127.0.0.1/tcp/0")
	a := startNode(t, homeA, tcp)
	b := startNode(t, homeB, tcp, WithCompute(false), WithBootstrap(a.host.Addrs()...))
	waitFor(t, 20*time.Second, "the PSK nodes on one topic", func() bool { return b.host.TopicPeers() == 1 })
	for _, addr := range a.host.Addrs() {
		if !strings.Contains(addr, "/tcp/") {
			t.Fatalf("a private node listens on %s", addr)
		}
	}
}
