package p2p

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/opendms/dms/types"
)

func TestLostPeersHandsBackAfterTwoChecksThenBacksOff(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(round int) time.Time { return t0.Add(time.Duration(round) * time.Second) }
	p, q, r := peer.ID("p"), peer.ID("q"), peer.ID("r")
	l := newLostPeers()
	due := map[peer.ID][]int{} // the checks at which each peer was handed back
	for round := 1; round <= 80; round++ {
		missing := []missingPeer{{id: p}}
		if round == 1 {
			missing = append(missing, missingPeer{id: q}) // missing at one check only
		}
		if round >= 70 {
			missing = append(missing, missingPeer{id: r})
		}
		for _, rep := range l.check(at(round), missing) {
			due[rep.peer] = append(due[rep.peer], round)
			if first := map[peer.ID]int{p: 1, r: 70}[rep.peer]; rep.step != handBack || rep.attempt != len(due[rep.peer]) || !rep.since.Equal(at(first)) {
				t.Fatalf("check %d: %+v, want hand-back %d, missing since %v", round, rep, len(due[rep.peer]), at(first))
			}
		}
	}
	want := map[peer.ID][]int{p: {2, 3, 5, 9, 17, 33, 65}, r: {71, 72, 74, 78}} // gaps 1, 2, 4... up to maxRepairGap
	for _, id := range []peer.ID{p, q, r} {
		if !slices.Equal(due[id], want[id]) {
			t.Errorf("%s handed back at checks %v, want %v", id, due[id], want[id])
		}
	}

	// Present at one check, p is forgotten: missing again, it waits a check
	// and is due as if for the first time.
	if got := l.check(at(81), nil); len(got) != 0 || len(l.peers) != 0 {
		t.Fatalf("nobody missing: due %v, remembered %d", got, len(l.peers))
	}
	if got := l.check(at(82), []missingPeer{{id: p}}); len(got) != 0 {
		t.Fatalf("p due at its first check after it came back: %v", got)
	}
	if got := l.check(at(83), []missingPeer{{id: p}}); len(got) != 1 || got[0].attempt != 1 || !got[0].since.Equal(at(82)) {
		t.Fatalf("p lost again: %+v, want its first hand-back, missing since check 82", got)
	}
}

// A peer gossipsub declared dead is reset, then handed back at the next
// check; declared dead again (its new stream died), it is reset again
// before its next hand-back.
func TestLostPeersResetsADeadPeerBeforeHandingItBack(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLostPeers()
	dead := true
	var steps []string
	for round := 1; round <= 12; round++ {
		for _, rep := range l.check(t0.Add(time.Duration(round)*time.Second), []missingPeer{{id: "d", dead: dead}}) {
			if rep.step == resetTheirs {
				steps = append(steps, fmt.Sprintf("%d: reset", round))
				dead = false // the shell forgets it was dead once reset
				continue
			}
			steps = append(steps, fmt.Sprintf("%d: hand back %d", round, rep.attempt))
			dead = rep.attempt == 1 // the first hand-back's stream dies
		}
	}
	want := []string{"2: reset", "3: hand back 1", "4: reset", "5: hand back 2", "7: hand back 3", "11: hand back 4"}
	if !slices.Equal(steps, want) {
		t.Fatalf("steps %q, want %q", steps, want)
	}
}

// A peer whose topics gossipsub forgot has both streams reset once it is
// found so at two checks in a row, then again after 1, 2, 4... checks while
// it stays so; a peer dropped instead is handed back on the same schedule.
func TestLostPeersResetsBothStreamsOfAForgottenPeer(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLostPeers()
	var steps []string
	for round := 1; round <= 10; round++ {
		missing := []missingPeer{{id: "f", forgot: round <= 6}}
		if round > 6 {
			missing[0].forgot = false // gossipsub dropped it since
		}
		for _, rep := range l.check(t0.Add(time.Duration(round)*time.Second), missing) {
			steps = append(steps, fmt.Sprintf("%d: %s %d", round, map[repairStep]string{handBack: "hand back", resetTheirs: "reset", resetBoth: "reset both"}[rep.step], rep.attempt))
		}
	}
	want := []string{"2: reset both 1", "3: reset both 2", "5: reset both 3", "9: hand back 4"}
	if !slices.Equal(steps, want) {
		t.Fatalf("steps %q, want %q", steps, want)
	}
}

// errFlaky is the failure flakyGossip injects.
var errFlaky = errors.New("flaky gossip: stream refused")

// flakyGossip is the libp2p host gossipsub runs on (Config.pubsubHost),
// failing the next openFails gossipsub streams it opens and resetting the
// next resets it accepts.
type flakyGossip struct {
	host.Host
	openFails, resets atomic.Int32
}

func (f *flakyGossip) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if take(&f.openFails) {
		return nil, errFlaky
	}
	return f.Host.NewStream(ctx, p, pids...)
}

func (f *flakyGossip) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	f.Host.SetStreamHandler(pid, func(s network.Stream) {
		if take(&f.resets) {
			_ = s.Reset()
			return
		}
		handler(s)
	})
}

// take takes one from n if it is positive.
func take(n *atomic.Int32) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// gossipFault makes a's gossipsub lose b, a connected peer, in one of the
// two ways go-libp2p-pubsub v0.19 does, with one fault to spare: b is
// lost once lost faults are spent, and the spare fails the first attempt
// to get it back.
type gossipFault struct {
	name string
	// openFails is how many gossipsub streams a fails to open, resets how
	// many of a's b resets.
	openFails, resets int32
	lost              int32
}

var gossipFaults = []gossipFault{
	// handleNewPeer: NewStream fails, the peer goes to newPeerError and is
	// deleted.
	{name: "stream fails to open", openFails: 2, lost: 1},
	// handleDeadPeers: the first stream and the four respawns
	// (MaxBackoffAttempts) die, and the peer is deleted.
	{name: "stream reset five times", resets: 6, lost: 5},
}

// gossipPair is two Hosts, b bootstrapped from a and both subscribed to bid
// requests, delivered to atA and atB.
type gossipPair struct {
	a, b     *Host
	atA, atB chan types.JobID
	// spent counts the faults injected so far.
	spent func() int32
}

// loseGossipPeer starts a gossipPair with f's faults and both hosts
// checking gossip every repair, and returns once a's gossipsub has given b
// up.
func loseGossipPeer(t testing.TB, f gossipFault, repair time.Duration) gossipPair {
	t.Helper()
	flaky := func(cfg *Config, openFails, resets int32) *flakyGossip {
		fg := &flakyGossip{}
		fg.openFails.Store(openFails)
		fg.resets.Store(resets)
		cfg.GossipRepair = repair
		cfg.pubsubHost = func(h host.Host) host.Host { fg.Host = h; return fg }
		return fg
	}
	cfgA := testConfig(t)
	fa := flaky(&cfgA, f.openFails, 0)
	a := newTestHost(t, cfgA)
	atA := subscribeJobs(t, a)
	cfgB := testConfig(t, a.Addrs()...)
	fb := flaky(&cfgB, 0, f.resets)
	b := newTestHost(t, cfgB)
	atB := subscribeJobs(t, b)
	spent := func() int32 { return f.openFails - fa.openFails.Load() + f.resets - fb.resets.Load() }
	waitFor(t, 10*time.Second, "a's gossipsub to spend the faults that lose b", func() bool { return spent() >= f.lost })
	return gossipPair{a: a, b: b, atA: atA, atB: atB, spent: spent}
}

// onEachOthersTopic reports whether a and b are on each other's topic.
func (g gossipPair) onEachOthersTopic() bool {
	return slices.Contains(g.a.TopicPeerIDs(), g.b.ID()) && slices.Contains(g.b.TopicPeerIDs(), g.a.ID())
}

// subscribeJobs delivers the job IDs of the bid requests h receives.
func subscribeJobs(t testing.TB, h *Host) chan types.JobID {
	t.Helper()
	jobs := make(chan types.JobID, 16)
	err := h.SubscribeBidRequests(func(_ string, _ *types.Envelope, req *types.BidRequest) {
		select {
		case jobs <- req.JobID:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

func publishJob(t *testing.T, h *Host, job types.JobID) {
	t.Helper()
	req := &types.BidRequest{JobID: job, Requester: h.ID(), ReplyAddrs: h.Addrs(), Executor: "wasm"}
	env, err := types.Seal(h.cfg.Key, req, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.PublishEnvelope(testCtx(t, 5*time.Second), env); err != nil {
		t.Fatal(err)
	}
}

func waitJob(t *testing.T, jobs chan types.JobID, want types.JobID, who string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-jobs:
			if got == want {
				return
			}
		case <-timeout:
			t.Fatalf("%s never received the bid request of %s", who, want)
		}
	}
}

// publishToNobody publishes a bid request from h and checks that h sent no
// copy of it to anyone: once h's own subscription has it, a round trip to
// gossipsub's loop (TopicPeers) finds the loop done with the publication.
func publishToNobody(t *testing.T, h *Host, own chan types.JobID, job types.JobID) {
	t.Helper()
	publishJob(t, h, job)
	waitJob(t, own, job, "its publisher")
	_ = h.TopicPeers()
	if n := h.Traffic().GossipSent; n != 0 {
		t.Fatalf("%s sent %d copies of a bid request, want none", job, n)
	}
}

// connIDs returns the IDs of a's connections to b, sorted.
func connIDs(a, b *Host) []string {
	var ids []string
	for _, c := range a.host.Network().ConnsToPeer(b.host.ID()) {
		ids = append(ids, c.ID())
	}
	slices.Sort(ids)
	return ids
}

// TestGossipLosesAConnectedPeerForGood reproduces what the repair is for,
// with it off (one check an hour): a's gossipsub fails to open its stream
// to b, or has it reset five times, drops b and never tries again, though
// the connection stays up and b now accepts; a bid request from either
// reaches nobody.
func TestGossipLosesAConnectedPeerForGood(t *testing.T) {
	for _, f := range gossipFaults {
		t.Run(f.name, func(t *testing.T) {
			g := loseGossipPeer(t, f, time.Hour)
			a, b := g.a, g.b
			waitFor(t, 10*time.Second, "a's gossipsub to drop b", func() bool {
				return !slices.Contains(a.ps.ListPeers(""), b.host.ID())
			})
			if a.host.Network().Connectedness(b.host.ID()) != network.Connected {
				t.Fatal("a and b disconnected: the fault must leave the connection up")
			}
			waitFor(t, 10*time.Second, "b's gossipsub to have a: only a's side fails", func() bool {
				return slices.Contains(b.ps.ListPeers(""), a.host.ID())
			})

			publishToNobody(t, a, g.atA, "from-a")
			publishToNobody(t, b, g.atB, "from-b")
			if len(g.atB) != 0 || len(g.atA) != 0 {
				t.Fatal("a bid request crossed between a and b")
			}
			if slices.Contains(a.TopicPeerIDs(), b.ID()) || slices.Contains(b.TopicPeerIDs(), a.ID()) {
				t.Fatal("a and b are on each other's topic")
			}
			if n := g.spent(); n != f.lost {
				t.Fatalf("%d faults spent, want %d: gossipsub tried b again", n, f.lost)
			}
			if n := a.Stats().GossipRepairs; n != 0 {
				t.Fatalf("%d gossip repairs with the repair off", n)
			}
		})
	}
}

// TestGossipRepairHandsALostPeerBack loses b as above, with both hosts
// checking gossip every 50ms: a hands b back to its gossipsub, once in vain
// (the spare fault), then for good, on the connections they had; a bid
// request published afterwards, from either, reaches the other.
func TestGossipRepairHandsALostPeerBack(t *testing.T) {
	const every = 50 * time.Millisecond
	for _, f := range gossipFaults {
		t.Run(f.name, func(t *testing.T) {
			g := loseGossipPeer(t, f, every)
			a, b := g.a, g.b
			lost := time.Now()
			conns := connIDs(a, b)
			waitFor(t, 10*time.Second, "a and b on each other's topic", g.onEachOthersTopic)
			t.Logf("b back on a's topic %s after a's gossipsub dropped it (checks every %s)", time.Since(lost).Round(time.Millisecond), every)
			if now := connIDs(a, b); !slices.Equal(now, conns) {
				t.Fatalf("a's connections to b went from %v to %v: the repair must leave them alone", conns, now)
			}
			if n := g.spent(); n != f.lost+1 {
				t.Fatalf("%d faults spent, want %d: the first repair meets the spare", n, f.lost+1)
			}
			if n := a.Stats().GossipRepairs; n < 2 {
				t.Fatalf("%d gossip repairs, want at least 2 (one in vain)", n)
			}

			publishJob(t, a, "from-a")
			waitJob(t, g.atB, "from-a", "b")
			publishJob(t, b, "from-b")
			waitJob(t, g.atA, "from-b", "a")
		})
	}
}

// gossipStreams returns the streams of gossipsub between a and b that a
// has, inbound (b's writer) or outbound (a's writer).
func gossipStreams(a, b *Host, dir network.Direction) []network.Stream {
	var out []network.Stream
	for _, c := range a.host.Network().ConnsToPeer(b.host.ID()) {
		for _, s := range c.GetStreams() {
			if s.Stat().Direction == dir && slices.Contains(a.gossipProtocols(b.host.ID()), s.Protocol()) {
				out = append(out, s)
			}
		}
	}
	return out
}

// forgetGossipTopics starts two Hosts checking gossip every repair, both
// subscribed to bid requests and on each other's topic, then resets a's
// gossipsub stream to b, as a connection closing under it does: a's
// gossipsub declares b dead, forgets b's topics and opens a new stream,
// while b's stream to a lives on and announces nothing again. It returns
// once a has its new stream.
func forgetGossipTopics(t testing.TB, repair time.Duration) gossipPair {
	t.Helper()
	cfgA := testConfig(t)
	cfgA.GossipRepair = repair
	a := newTestHost(t, cfgA)
	atA := subscribeJobs(t, a)
	cfgB := testConfig(t, a.Addrs()...)
	cfgB.GossipRepair = repair
	b := newTestHost(t, cfgB)
	g := gossipPair{a: a, b: b, atA: atA, atB: subscribeJobs(t, b)}
	waitFor(t, 10*time.Second, "a and b on each other's topic", g.onEachOthersTopic)
	old := gossipStreams(a, b, network.DirOutbound)
	if len(old) != 1 {
		t.Fatalf("a has %d gossipsub streams to b, want 1", len(old))
	}
	_ = old[0].Reset()
	waitFor(t, 10*time.Second, "a's gossipsub to open a new stream to b", func() bool {
		now := gossipStreams(a, b, network.DirOutbound)
		return len(now) == 1 && now[0] != old[0] && slices.Contains(a.ps.ListPeers(""), b.host.ID())
	})
	return g
}

// TestGossipForgetsTheTopicsOfAPeerWhoseStreamDied reproduces the second
// thing the repair is for, with it off: once a's stream to b died and was
// opened again, a's gossipsub has b as a peer but not on the topic, for
// good, though b is, and b has a on it; a's bid requests miss b.
func TestGossipForgetsTheTopicsOfAPeerWhoseStreamDied(t *testing.T) {
	g := forgetGossipTopics(t, time.Hour)
	a, b := g.a, g.b
	time.Sleep(time.Second) // b announces nothing in that time
	if slices.Contains(a.TopicPeerIDs(), b.ID()) {
		t.Fatal("a has b on the topic again: gossipsub no longer forgets, the repair of forgotten topics can go")
	}
	if !slices.Contains(b.TopicPeerIDs(), a.ID()) {
		t.Fatal("b lost a from the topic too")
	}
	publishToNobody(t, a, g.atA, "from-a")
	if len(g.atB) != 0 {
		t.Fatal("a's bid request reached b")
	}
}

// TestGossipRepairMakesAPeerAnnounceItsTopicsAgain forgets b's topics on a
// as above, with both hosts checking gossip every 50ms: a resets both
// gossipsub streams with b, on the connections they had, and both are on
// each other's topic again; a bid request published afterwards, from
// either, reaches the other.
func TestGossipRepairMakesAPeerAnnounceItsTopicsAgain(t *testing.T) {
	const every = 50 * time.Millisecond
	g := forgetGossipTopics(t, every)
	a, b := g.a, g.b
	forgot := time.Now()
	conns := connIDs(a, b)
	waitFor(t, 10*time.Second, "a and b on each other's topic", g.onEachOthersTopic)
	t.Logf("b back on a's topic %s after a's gossipsub forgot it (checks every %s)", time.Since(forgot).Round(time.Millisecond), every)
	if now := connIDs(a, b); !slices.Equal(now, conns) {
		t.Fatalf("a's connections to b went from %v to %v: the repair must leave them alone", conns, now)
	}
	if n := a.Stats().GossipRepairs; n < 1 {
		t.Fatalf("%d gossip repairs on a, want at least 1", n)
	}
	publishJob(t, a, "from-a")
	waitJob(t, g.atB, "from-a", "b")
	publishJob(t, b, "from-b")
	waitJob(t, g.atA, "from-b", "a")
	// Settled, the pair stays so: no repair for as many checks again.
	n := a.Stats().GossipRepairs + b.Stats().GossipRepairs
	time.Sleep(20 * every)
	if m := a.Stats().GossipRepairs + b.Stats().GossipRepairs; m != n {
		t.Fatalf("%d more gossip repairs once a and b were on each other's topic", m-n)
	}
}
