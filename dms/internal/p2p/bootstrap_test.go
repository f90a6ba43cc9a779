package p2p

import (
	"testing"
	"time"
)

// A host that reached only DHT clients among its bootstrap peers knows no
// DHT server, so it can neither advertise nor look anyone up: it must go
// on dialling the bootstrap peers it is not connected to until one that
// serves answers, though it is not alone. The server here is down when
// the host starts and comes back on the same address and key; the DHT's
// own redial of its bootstrap peers runs every two minutes only.
func TestBootstrapUntilADHTServer(t *testing.T) {
	client := testConfig(t)
	client.DHTClient = true
	x := newTestHost(t, client)

	server := testConfig(t)
	server.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	first, err := New(testCtx(t, 10*time.Second), server)
	if err != nil {
		t.Fatal(err)
	}
	addrs := first.Addrs()
	server.Listen = []string{first.host.Addrs()[0].String()}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t, append(x.Addrs(), addrs...)...)
	cfg.DHTClient = true
	h := newTestHost(t, cfg)
	waitFor(t, 10*time.Second, "the host to reach the client among its bootstrap peers", func() bool { return h.Connected(x.ID()) })
	if n := h.DHTServers(); n != 0 {
		t.Fatalf("%d DHT servers known while the only one is down", n)
	}

	newTestHost(t, server) // the server, back
	waitFor(t, 30*time.Second, "the host to dial the server back and know it as a DHT server", func() bool { return h.DHTServers() == 1 })
}
