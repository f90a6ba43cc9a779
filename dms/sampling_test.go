package dms

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// samplingNet starts n nodes, node 0 a requester only with
// WithBidSampling(d), the others computing.
func samplingNet(t *testing.T, n, d int) []*DMS {
	t.Helper()
	return relNet(t, n, func(i int) bool { return i != 0 }, func(i int) []Option {
		opts := []Option{WithLease(10 * time.Second)}
		if i == 0 {
			opts = append(opts, WithBidSampling(d))
		}
		return opts
	})
}

// minute is a context that ends a minute from now, or with the test.
func minute(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// runTiny submits a tiny job on d and waits until it completed.
func runTiny(t *testing.T, d *DMS) types.JobID {
	t.Helper()
	return types.JobID(runSpec(t, minute(t), d, tinySpec(t, 0, "sampled\n")).ID)
}

// bidRequests sums the bid requests the nodes received, from the topic and
// sent straight to them, and returns who received any.
func bidRequests(nodes []*DMS) (gossip, direct uint64, got map[string]bool) {
	got = map[string]bool{}
	for _, d := range nodes {
		s := d.NetworkStats()
		gossip, direct = gossip+s.BidRequestsGossip, direct+s.BidRequestsDirect
		if s.BidRequestsGossip+s.BidRequestsDirect > 0 {
			got[d.host.ID()] = true
		}
	}
	return gossip, direct, got
}

// TestSampledBidRequest places and runs a job on a network of 8 nodes while
// asking only 2 of the 7 that compute: the requester found them in the DHT
// under the compute rendezvous, sent them the bid request directly, and
// closed the auction once both answered.
func TestSampledBidRequest(t *testing.T) {
	nodes := samplingNet(t, 8, 2)
	waitFor(t, 30*time.Second, "the requester to know the 7 compute nodes", func() bool {
		return nodes[0].NetworkStats().Candidates == 7
	})
	id := runTiny(t, nodes[0])
	gossip, direct, got := bidRequests(nodes)
	if gossip != 0 || direct != 2 || len(got) != 2 {
		t.Fatalf("bid requests: %d over gossip, %d direct, to %d nodes; want 2 direct to 2 nodes", gossip, direct, len(got))
	}
	job, err := nodes[0].GetJob(context.Background(), string(id))
	if err != nil {
		t.Fatal(err)
	}
	if !got[job.Node] {
		t.Fatalf("the job ran on %s, which was not asked", job.Node)
	}
	if s := nodes[0].NetworkStats(); s.GossipSent != 0 || s.Frames[string(p2p.BidRequestProtocol)] != 2 {
		t.Fatalf("requester sent %d gossip copies and %d direct bid requests; want 0 and 2", s.GossipSent, s.Frames[string(p2p.BidRequestProtocol)])
	}
	// The auction's messages went on pair streams: none on the protocols
	// of a message each, which only peers that do not serve pair streams need.
	for _, d := range nodes {
		f := d.NetworkStats().Frames
		if n := f[string(p2p.BidProtocol)] + f[string(p2p.AcceptProtocol)] + f[string(p2p.CancelProtocol)] + f[string(p2p.StatusProtocol)]; n != 0 {
			t.Fatalf("node %s sent %d frames on the protocols of a message each: %v", d.host.ID(), n, f)
		}
	}
	if f := nodes[0].NetworkStats().Frames; f[string(p2p.PairProtocol)] == 0 || f[string(p2p.InvokeProtocol)] == 0 {
		t.Fatalf("the requester sent no pair or invocation frame: %v", f)
	}
}

// TestSamplingFallsBackToGossip asks for more nodes than compute: the
// requester knows too few candidates to sample, and publishes on the topic.
func TestSamplingFallsBackToGossip(t *testing.T) {
	nodes := samplingNet(t, 3, 5)
	runTiny(t, nodes[0])
	gossip, direct, got := bidRequests(nodes)
	if gossip != 2 || direct != 0 || len(got) != 2 {
		t.Fatalf("bid requests: %d over gossip, %d direct, to %d nodes; want 2 over gossip", gossip, direct, len(got))
	}
}

func TestWithBidSamplingBounds(t *testing.T) {
	for _, d := range []int{-1, MaxBidSampling + 1} {
		if _, err := newConfig([]Option{WithHome("x"), WithBidSampling(d)}); err == nil {
			t.Errorf("WithBidSampling(%d) accepted", d)
		}
	}
	if _, err := newConfig([]Option{WithHome("x"), WithConnLimits(10, 10)}); err == nil {
		t.Error("WithConnLimits(10, 10) accepted")
	}
}

// TestAutoSampling runs the default mode on a network of 6 nodes with
// sample_above 4: the requester's first job goes out on gossip (it has
// not looked for candidates yet), a later one, once it knows the 5
// compute nodes, to 2 of them; a job that needs more cores than any of
// them offers has no candidate of its class and goes out on gossip.
func TestAutoSampling(t *testing.T) {
	nodes := relNet(t, 6, func(i int) bool { return i != 0 }, func(i int) []Option {
		opts := []Option{WithLease(10 * time.Second)}
		if i == 0 {
			opts = append(opts, WithSampleAbove(4))
		}
		return opts
	})
	runTiny(t, nodes[0])
	if gossip, direct, _ := bidRequests(nodes); gossip != 5 || direct != 0 {
		t.Fatalf("first job: %d bid requests over gossip, %d direct; want 5 over gossip", gossip, direct)
	}
	waitFor(t, 30*time.Second, "the requester to know the 5 compute nodes", func() bool {
		return nodes[0].NetworkStats().Candidates == 5
	})
	runTiny(t, nodes[0])
	if gossip, direct, _ := bidRequests(nodes); gossip != 5 || direct != 2 {
		t.Fatalf("second job: %d bid requests over gossip, %d direct in all; want 5 and 2", gossip, direct)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := tinySpec(t, 0, "big\n")
	spec.Resources.CPU = 1 << 20 // over a thousand cores: no class of the network's
	spec.QueueTimeout = 0
	spec.BidWindow = jobs.Duration(5 * time.Second)
	h, err := nodes[0].Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if j, err := h.Wait(ctx); err != nil || j.State != types.JobFailed {
		t.Fatalf("a job no node can take: %+v, %v", j, err)
	}
	if gossip, _, _ := bidRequests(nodes); gossip < 10 {
		t.Fatalf("the big job's bid request went out on gossip %d times, want 5 at least", gossip-5)
	}
}

// network.sampling and network.sample_above are read from the config and
// refused when they make no sense, naming the key.
func TestSamplingConfig(t *testing.T) {
	home, _ := newHome(t)
	base, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sampling string
		above    int
		err      string
	}{
		{"", 0, ""}, {"auto", 100, ""}, {"gossip", 0, ""}, {"3", 0, ""},
		{"0", 0, `network.sampling "0": want auto, gossip or a number of nodes from 1 to 100`},
		{"two", 0, `network.sampling "two"`},
		{"101", 0, `network.sampling "101"`},
		{"auto", -1, "network.sample_above -1"},
	} {
		cfg := base
		cfg.Network.Sampling, cfg.Network.SampleAbove = c.sampling, c.above
		if err := writeConfig(home, cfg); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(home)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("sampling %q, sample_above %d: %v, want %q", c.sampling, c.above, err, c.err)
		}
	}
	if _, err := newConfig([]Option{WithHome("x"), WithSampleAbove(0)}); err == nil {
		t.Error("WithSampleAbove(0) accepted")
	}
}

// TestSampledJobFallsBackToGossip: a requester that asks one sampled node
// a job only one of four nodes can run (a label) asks every node once an
// auction drew no bid, so its jobs complete whichever node the sample
// picked first.
func TestSampledJobFallsBackToGossip(t *testing.T) {
	var nodes []*DMS
	for i := range 5 {
		home, _ := newHome(t)
		if i == 4 {
			rewriteConfig(t, home, func(c *Config) { c.Offer.Labels = map[string]string{"gpu": "yes"} })
		}
		opts := []Option{WithLease(10 * time.Second), WithCompute(i != 0)}
		if i == 0 {
			opts = append(opts, WithBidSampling(1))
		}
		for _, prev := range nodes {
			opts = append(opts, WithBootstrap(prev.host.Addrs()...))
		}
		nodes = append(nodes, startNode(t, home, opts...))
	}
	waitFor(t, 30*time.Second, "the requester to know the 4 compute nodes", func() bool {
		return nodes[0].NetworkStats().Candidates == 4
	})
	for range 3 {
		spec := tinySpec(t, 0, "labelled\n")
		spec.Constraints.Labels = map[string]string{"gpu": "yes"}
		spec.Retries = 1
		if j := runSpec(t, minute(t), nodes[0], spec); j.Node != nodes[4].host.ID() {
			t.Fatalf("a job only node 4 can run ran on %s", j.Node)
		}
	}
}

// Compute nodes that are DHT clients (network.dht client) keep no one's
// records and are in no routing table, yet publish their provider
// records to the servers: a sampling requester finds them and places a
// job on one. A bad mode is refused naming the key.
func TestDHTClientNodes(t *testing.T) {
	nodes := relNet(t, 6, func(i int) bool { return i != 0 }, func(i int) []Option {
		opts := []Option{WithLease(10 * time.Second)}
		switch {
		case i == 0:
			opts = append(opts, WithBidSampling(2))
		case i >= 2:
			opts = append(opts, WithDHTMode(DHTClient))
		}
		return opts
	})
	waitFor(t, 30*time.Second, "the requester to know the 5 compute nodes", func() bool {
		return nodes[0].NetworkStats().Candidates == 5
	})
	for i, d := range nodes {
		st := d.NetworkStats()
		if st.DHTClient != (i >= 2) {
			t.Fatalf("node %d: DHT client %v", i, st.DHTClient)
		}
		if st.DHTServers > 2 {
			t.Fatalf("node %d has %d DHT servers in its routing table; only nodes 0 and 1 serve", i, st.DHTServers)
		}
	}
	runTiny(t, nodes[0])

	home, _ := newHome(t)
	cfg, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Network.DHT = "peer"
	if err := writeConfig(home, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(home); err == nil || !strings.Contains(err.Error(), `network.dht "peer"`) {
		t.Fatalf("a bad network.dht: %v", err)
	}
	if _, err := newConfig([]Option{WithHome("x"), WithDHTMode("peer")}); err == nil {
		t.Error(`WithDHTMode("peer") accepted`)
	}
}

// A sampled candidate that vanished without a word, so that a dial to it
// hangs (its machine lost power, its link went dark), costs a bid request
// the first round's share of the bid window, not all of it: the node
// asked in its place still gets the request, with the rest of the window,
// and only the vanished node is left out of the samples that follow (a
// replacement asked after the window's end was refused at once and left
// out though it did nothing wrong).
func TestSampledRequestOutlivesAVanishedCandidate(t *testing.T) {
	nodes := samplingNet(t, 4, 2)
	waitFor(t, 30*time.Second, "the requester to know the 3 compute nodes", func() bool {
		return nodes[0].NetworkStats().Candidates == 3
	})
	addrs := nodes[3].host.Addrs()
	if err := nodes[3].Close(); err != nil {
		t.Fatal(err)
	}
	blackhole(t, addrs)
	live := nodes[1:3]
	for n := uint64(1); ; n++ {
		spec := tinySpec(t, 0, "sampled\n")
		spec.BidWindow = jobs.Duration(4 * time.Second)
		runSpec(t, minute(t), nodes[0], spec)
		if gossip, direct, _ := bidRequests(live); gossip != 0 || direct != 2*n {
			t.Fatalf("after %d jobs the 2 live nodes got %d bid requests direct, %d over gossip; want every job to reach both", n, direct, gossip)
		}
		if c := nodes[0].NetworkStats().Candidates; c == 2 {
			break // the vanished node was asked and is left out; the live ones are not
		} else if c != 3 || n == 20 {
			t.Fatalf("after %d jobs the requester samples %d candidates; want 3 until the vanished one is asked, then 2", n, c)
		}
	}
}

// blackhole listens on the TCP and UDP ports of addrs, on loopback, and
// answers nothing: a dial there hangs until the dialer gives up, as one to
// a machine that vanished. It stops when the test ends.
func blackhole(t *testing.T, addrs []string) {
	t.Helper()
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Fatal(err)
		}
		if port, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			l, err := net.Listen("tcp", "127.0.0.1:"+port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				var held []net.Conn // accepted and never answered
				defer func() {
					for _, c := range held {
						c.Close()
					}
				}()
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					held = append(held, c)
				}
			}()
		}
		if port, err := a.ValueForProtocol(ma.P_UDP); err == nil {
			c, err := net.ListenPacket("udp", "127.0.0.1:"+port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				buf := make([]byte, 2048)
				for {
					if _, _, err := c.ReadFrom(buf); err != nil {
						return
					}
				}
			}()
		}
	}
}
