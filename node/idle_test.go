package node

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

func TestIdleConfigResolve(t *testing.T) {
	p, err := DefaultOffer().Idle.Resolve()
	if err != nil || p != (IdlePolicy{Threshold: 0.25, Period: 30 * time.Second, StopWithin: 2 * time.Second}) {
		t.Fatalf("defaults: %+v, %v", p, err)
	}
	if p.SampleEvery() != 500*time.Millisecond {
		t.Fatalf("sampled every %s", p.SampleEvery())
	}
	p, err = IdleConfig{Enabled: true, Threshold: " 60 % ", Period: "0s", StopWithin: "1s"}.Resolve()
	if err != nil || p != (IdlePolicy{Threshold: 0.6, Period: 0, StopWithin: time.Second}) {
		t.Fatalf("given: %+v, %v", p, err)
	}
	tests := []struct {
		name string
		c    IdleConfig
		want string
	}{
		{"a fraction", IdleConfig{Threshold: "0.25"}, `offer.idle.threshold: "0.25" is not a share of the host's CPU`},
		{"0%", IdleConfig{Threshold: "0%"}, "offer.idle.threshold"},
		{"100%", IdleConfig{Threshold: "100%"}, "offer.idle.threshold"},
		{"negative period", IdleConfig{Period: "-1s"}, `offer.idle.period: "-1s" is not a duration`},
		{"stop within too short", IdleConfig{StopWithin: "100ms"}, `offer.idle.stop_within: "100ms" is not a duration from 400ms to 1m0s`},
		{"throttle", IdleConfig{Policy: "throttle"}, "offer.idle.policy: throttle is not offered: a wasm unit runs in the daemon's process"},
		{"unknown policy", IdleConfig{Policy: "pause"}, `offer.idle.policy: "pause" is not a policy: want stop`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOffer()
			o.Idle = tt.c
			err := o.Validate()
			var oe *OfferError
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.As(err, &oe) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// sec is n seconds of CPU time.
func sec(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }

func TestIdleWatch(t *testing.T) {
	w := newIdleWatch(IdlePolicy{Threshold: 0.25, Period: 3 * time.Second, StopWithin: 4 * time.Second}, t0)
	// Each step is one second on a 2-core host: Total grows by 2s. others
	// is the CPU the host's other processes used in it, own the node's.
	var times CPUTimes
	step := func(i int, others, own float64) HostState {
		times.Total += sec(2)
		times.Busy += sec(others + own)
		times.Own += sec(own)
		return w.observe(times, t0.Add(time.Duration(i)*time.Second))
	}
	steps := []struct {
		others, own float64
		idle        bool
		reason      string
	}{
		{0, 0, false, "host busy: measuring its CPU use"},
		{0.2, 1.8, false, "host busy: other processes under 25% CPU for 1s of the 3s it waits before bidding"}, // the node's own use does not count
		{0.5, 0, false, "host busy: other processes under 25% CPU for 2s of the 3s"},                           // 25% is not over 25%
		{0.1, 0, true, ""},
		{1.3, 0.2, false, "host busy: other processes use 65% CPU > 25%"},
		{0, 0, false, "host busy: other processes under 25% CPU for 1s of the 3s"}, // the period starts over
		{0, 0, false, "for 2s of the 3s"},
		{0, 0, true, ""},
	}
	for i, s := range steps {
		st := step(i, s.others, s.own)
		if st.Idle != s.idle || !strings.Contains(st.Reason, s.reason) || (s.reason == "" && st.Reason != "") {
			t.Fatalf("step %d: %+v, want idle %v, %q", i, st, s.idle, s.reason)
		}
	}
	if st := w.state; st.Since != t0.Add(7*time.Second) || st.Others != 0 {
		t.Fatalf("state %+v: idle since the last step", st)
	}
	// A failed reading: not idle, and the period starts over from the next
	// two samples.
	if st := w.failed(errors.New("no /proc"), t0.Add(8*time.Second)); st.Idle || st.Reason != "host busy: cannot read its CPU use: no /proc" {
		t.Fatalf("after a failed reading: %+v", st)
	}
	if st := step(9, 0, 0); st.Idle {
		t.Fatalf("idle from one sample after a failure: %+v", st)
	}
}

// The machine of an idle-only node: while its host is not idle it declines
// (busy: only for now) and refuses Accepts; when the host stops being
// idle, its locked allocations end and its running ones are stopped, each
// failed, the node's fault.
func TestMachineIdleOnlyHost(t *testing.T) {
	d := newDriver(t)
	running := confirmOf(t, d.accept("run", res(1, gib)))
	if rep, _ := d.invoke("run", running.Epoch); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	confirmOf(t, d.accept("locked", res(0.5, gib)))
	d.bid(requester, "held", res(0.5, gib))

	busy := "host busy: other processes use 63% CPU > 25%"
	d.m.SetHost(busy, d.now)
	effs := d.flush()
	why := "stopped for the host's owner (idle_only): " + busy
	if len(effs) != 1 || effs[0] != (Stop{AllocationID: "run", Reason: why, ByNode: true}) {
		t.Fatalf("effects %v, want the running allocation stopped", effs)
	}
	if _, kept := d.saved["locked"]; kept || d.m.Info(d.now).Locked != 0 {
		t.Fatalf("the lock outlived the owner's return: %+v", d.saved["locked"])
	}
	rep := d.acceptFrom(requester, types.Accept{JobID: "held", AllocationID: "held", Resources: res(0.5, gib)})
	if r, ok := rep.Msg.(*types.Reject); !ok || r.Reason != busy {
		t.Fatalf("an accept while the host is busy: %v", rep)
	}
	dec, ok := d.bid(requester, "new", res(0.5, gib)).(*types.Decline)
	if !ok || len(dec.Reasons) != 1 || dec.Reasons[0] != busy || !dec.Busy {
		t.Fatalf("want a busy decline saying why, got %#v", dec)
	}
	if dec, ok := d.bid(requester, "huge", res(64, gib)).(*types.Decline); !ok || dec.Busy {
		t.Fatalf("a job the node can never take is not declined as busy: %#v", dec)
	}
	// Busy again with another reading: nothing more to stop.
	d.m.SetHost("host busy: other processes use 90% CPU > 25%", d.now)
	if effs := d.flush(); len(effs) != 0 {
		t.Fatalf("effects %v", effs)
	}
	d.m.RunEnded(types.Status{AllocationID: "run", State: types.AllocFailed, Fault: types.FaultNode, Reason: why}, d.now)
	d.flush()
	if r := d.saved["run"]; r.State != types.AllocFailed || r.Fault != types.FaultNode || r.Reason != why {
		t.Fatalf("record %+v", r)
	}
	d.m.SetHost("", d.now)
	if _, ok := d.bid(requester, "later", res(1, gib)).(*types.Bid); !ok {
		t.Fatal("no bid once the host is idle again")
	}
}

// A warm instance of an idle-only node stops at once when the owner
// returns, calls in flight and all: it does not wait for them, as a cancel
// does.
func TestIdleOnlyNodeStopsWarmInstancesAtOnce(t *testing.T) {
	cpu := &scriptedCPU{}
	w := newWarmHarness(t, func(c *Config) {
		c.Idle = &IdlePolicy{Threshold: 0.5, Period: 0, StopWithin: 400 * time.Millisecond}
		c.CPU = cpu
	})
	waitUntil(t, func() bool { in := w.info(); return in.Host != nil && in.Host.Idle })
	done := w.start("a1", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	fi := w.exec.instance("a1")
	inFlight := make(chan *types.CallReply, 1)
	go func() { inFlight <- w.call(requester, "a1", "wait") }()
	<-fi.entered
	cpu.others.Store(800)
	last := ended(t, done)
	if last.State != types.AllocFailed || last.Fault != types.FaultNode || !strings.HasPrefix(last.Reason, "stopped for the host's owner (idle_only): host busy") {
		t.Fatalf("last status %+v", last)
	}
	if r := <-inFlight; r.Status == types.CallOK {
		t.Fatalf("the call in flight outlived its instance: %+v", r)
	}
}

// scriptedCPU is a 2-core host whose other processes use others (a
// share, in thousandths) in each second between readings.
type scriptedCPU struct {
	others atomic.Int64
	times  atomic.Pointer[CPUTimes]
}

func (s *scriptedCPU) CPUTimes() (CPUTimes, error) {
	t := CPUTimes{}
	if p := s.times.Load(); p != nil {
		t = *p
	}
	t.Total += 2 * time.Second
	t.Busy += time.Duration(s.others.Load()) * 2 * time.Millisecond
	s.times.Store(&t)
	return t, nil
}

// An idle-only node, its host scripted: it bids once the host is idle,
// stops its running unit when the host's other processes go over the
// threshold (failed, the node's fault, so the requester places it
// elsewhere), declines while they stay over it, and bids again after the
// period.
func TestIdleOnlyNodeStopsItsUnitsWhenTheOwnerReturns(t *testing.T) {
	cpu := &scriptedCPU{}
	h := newHarnessConfig(t, newMemStore(), func(c *Config) {
		c.Idle = &IdlePolicy{Threshold: 0.5, Period: 200 * time.Millisecond, StopWithin: 400 * time.Millisecond}
		c.CPU = cpu
	})
	host := func() HostState {
		in, err := h.node.Info(h.ctx())
		if err != nil || in.Host == nil {
			t.Fatalf("info %+v, %v", in, err)
		}
		return *in.Host
	}
	waitUntil(t, func() bool { return host().Idle })

	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	done := make(chan []*types.Status)
	go func() {
		sts, _ := h.invoke("a1", c.Epoch, "block")
		done <- sts
	}()
	waitUntil(t, func() bool { in, _ := h.node.Info(h.ctx()); return in.Running == 1 })
	cpu.others.Store(900) // the owner is back: 90% of the host
	sts := <-done
	last := sts[len(sts)-1]
	if last.State != types.AllocFailed || last.Fault != types.FaultNode ||
		last.Reason != "stopped for the host's owner (idle_only): host busy: other processes use 90% CPU > 50%" {
		t.Fatalf("last status %+v", last)
	}
	if st := host(); st.Idle || st.Stopped != 1 || st.Others != 0.9 {
		t.Fatalf("host %+v", st)
	}
	if in, _ := h.node.Info(h.ctx()); in.Available != offered {
		t.Fatalf("the stopped unit holds capability: %+v", in)
	}
	deadline := time.Now().Add(time.Minute)
	h.node.HandleBidRequest(requester, &types.BidRequest{JobID: "j2", Requester: requester, Executor: "wasm", Resources: types.Resources{CPU: 1000, Memory: 1 << 20}, Deadline: deadline})
	if d, ok := (<-h.net.sent).(*types.Decline); !ok || !d.Busy || d.Reasons[0] != "host busy: other processes use 90% CPU > 50%" {
		t.Fatalf("want a busy decline, got %#v", d)
	}
	cpu.others.Store(100)
	waitUntil(t, func() bool { return host().Idle })
	// The job declined while the owner was back gets a late bid, unasked.
	if b, ok := (<-h.net.sent).(*types.Bid); !ok || b.JobID != "j2" {
		t.Fatalf("want a late bid for j2 once idle again, got %#v", b)
	}
	h.node.HandleBidRequest(requester, &types.BidRequest{JobID: "j3", Requester: requester, Executor: "wasm", Resources: types.Resources{CPU: 1000, Memory: 1 << 20}, Deadline: deadline})
	if b, ok := (<-h.net.sent).(*types.Bid); !ok || b.JobID != "j3" {
		t.Fatalf("want a bid once idle again, got %#v", b)
	}
}
