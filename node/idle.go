package node

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// IdleConfig is the offer's idle section: a provider that gives only its
// machine's idle CPU. Enabled, the node bids only while the CPU used by the
// host's other processes (everything but the daemon and what it runs) has
// stayed at or under Threshold for Period, and stops its running units
// within StopWithin once they go over it. Empty fields take the defaults.
type IdleConfig struct {
	Enabled    bool   `yaml:"enabled"`
	Threshold  string `yaml:"threshold"`   // share of all cores: "25%" (default)
	Period     string `yaml:"period"`      // Go duration, default 30s
	StopWithin string `yaml:"stop_within"` // Go duration, default 2s
	Policy     string `yaml:"policy"`      // IdleStop (default); throttling is not offered
}

// Idle policies. IdleStop is the only one: a wasm unit runs in the
// daemon's process, where nothing can slow it down, and docker units are not
// run by an idle-only node (their CPU is not told apart from the owner's).
const (
	IdleStop     = "stop"
	idleThrottle = "throttle" // refused, saying why
)

// Defaults and bounds of IdleConfig.
const (
	defaultIdleThreshold  = 0.25
	defaultIdlePeriod     = 30 * time.Second
	defaultIdleStopWithin = 2 * time.Second
	// A node samples every quarter of StopWithin: at 100ms, 20 ticks of
	// the kernel's 100 Hz accounting on 2 cores, enough to read a share.
	minIdleStopWithin = 400 * time.Millisecond
	maxIdleStopWithin = time.Minute
)

// Validate checks the idle section, every problem reported as an
// *OfferError, whether or not it is enabled.
func (c IdleConfig) Validate() error {
	_, err := c.Resolve()
	return err
}

// Resolve returns the policy the section describes, its defaults filled in.
func (c IdleConfig) Resolve() (IdlePolicy, error) {
	p := IdlePolicy{Threshold: defaultIdleThreshold, Period: defaultIdlePeriod, StopWithin: defaultIdleStopWithin}
	var errs []error
	if c.Threshold != "" {
		v, ok := strings.CutSuffix(strings.TrimSpace(c.Threshold), "%")
		pct, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || err != nil || !(pct > 0 && pct < 100) {
			errs = append(errs, &OfferError{"idle.threshold", fmt.Errorf("%q is not a share of the host's CPU: want more than 0%% and under 100%%, such as 25%%", c.Threshold)})
		}
		p.Threshold = pct / 100
	}
	if c.Period != "" {
		d, err := time.ParseDuration(c.Period)
		if err != nil || d < 0 {
			errs = append(errs, &OfferError{"idle.period", fmt.Errorf("%q is not a duration such as 30s or 5m", c.Period)})
		}
		p.Period = d
	}
	if c.StopWithin != "" {
		d, err := time.ParseDuration(c.StopWithin)
		if err != nil || d < minIdleStopWithin || d > maxIdleStopWithin {
			errs = append(errs, &OfferError{"idle.stop_within", fmt.Errorf("%q is not a duration from %s to %s", c.StopWithin, minIdleStopWithin, maxIdleStopWithin)})
		}
		p.StopWithin = d
	}
	switch c.Policy {
	case "", IdleStop:
	case idleThrottle:
		errs = append(errs, &OfferError{"idle.policy", errors.New("throttle is not offered: a wasm unit runs in the daemon's process, where it cannot be slowed down, " +
			"and an idle-only node runs no docker units; use stop (docs/batches.md)")})
	default:
		errs = append(errs, &OfferError{"idle.policy", fmt.Errorf("%q is not a policy: want stop", c.Policy)})
	}
	return p, errors.Join(errs...)
}

// IdlePolicy is when an idle-only node bids: while the host's other
// processes have used at most Threshold of all its cores for Period. When
// they go over it, the node stops its running units within StopWithin: it
// samples the host every SampleEvery (a quarter of StopWithin), sees the
// load in at most two samples, and a unit stops in milliseconds.
type IdlePolicy struct {
	Threshold  float64 // share of all cores, in (0, 1)
	Period     time.Duration
	StopWithin time.Duration
}

// SampleEvery is how often the node reads the host's CPU use.
func (p IdlePolicy) SampleEvery() time.Duration { return p.StopWithin / 4 }

func (p IdlePolicy) validate() error {
	if !(p.Threshold > 0 && p.Threshold < 1) || p.Period < 0 || p.StopWithin < minIdleStopWithin {
		return fmt.Errorf("node: idle policy: threshold %v must be in (0, 1), period %s not negative, stop within %s at least %s",
			p.Threshold, p.Period, p.StopWithin, minIdleStopWithin)
	}
	return nil
}

// CPUTimes are the host's cumulative CPU times, summed over its cores,
// from a fixed origin (the boot): Total of any kind, Busy used by any
// process or the kernel, Own used by this node (its process and the units
// it runs). Busy - Own is what the host's other processes used.
type CPUTimes struct {
	Total, Busy, Own time.Duration
}

// CPUSampler reads the host's CPU times (HostCPU on Linux; tests script
// them). The Node calls it from one goroutine.
type CPUSampler interface {
	CPUTimes() (CPUTimes, error)
}

// HostState is an idle-only node's view of its host.
type HostState struct {
	Idle      bool      // the node bids
	Others    float64   // share of all cores other processes used in the last sample, 0..1
	Threshold float64   // the policy's
	Since     time.Time // when Idle last changed (the node's start, at first)
	// Reason says why the node does not bid ("host busy: ..."); "" while
	// it is idle.
	Reason string
	// Stopped counts the units stopped since the start because the
	// host's other processes went over the threshold.
	Stopped uint64
}

// idleWatch turns samples of the host's CPU times into its state, by the
// policy. It is pure: time comes with each sample.
type idleWatch struct {
	p     IdlePolicy
	prev  CPUTimes
	at    time.Time // of prev; zero before the first sample
	quiet time.Time // since when the others stayed at or under the threshold; zero while over
	state HostState
}

func newIdleWatch(p IdlePolicy, now time.Time) *idleWatch {
	return &idleWatch{p: p, state: HostState{Threshold: p.Threshold, Since: now, Reason: "host busy: measuring its CPU use"}}
}

// observe takes the CPU times read at now. The others' share is that of
// the window since the previous sample; a window over the threshold makes
// the host busy at once, and it is idle again once every window of the
// last Period was at or under it.
func (w *idleWatch) observe(t CPUTimes, now time.Time) HostState {
	prev, prevAt := w.prev, w.at
	w.prev, w.at = t, now
	total := t.Total - prev.Total
	if prevAt.IsZero() || total <= 0 {
		return w.state // the first sample, or the counters did not move
	}
	others := float64((t.Busy-prev.Busy)-(t.Own-prev.Own)) / float64(total)
	w.state.Others = min(max(others, 0), 1)
	if w.state.Others > w.p.Threshold {
		w.quiet = time.Time{}
		w.set(false, fmt.Sprintf("host busy: other processes use %s CPU > %s", percent(w.state.Others), percent(w.p.Threshold)), now)
		return w.state
	}
	if w.quiet.IsZero() {
		w.quiet = prevAt
	}
	if quiet := now.Sub(w.quiet); quiet < w.p.Period {
		w.set(false, fmt.Sprintf("host busy: other processes under %s CPU for %s of the %s it waits before bidding",
			percent(w.p.Threshold), quiet.Round(100*time.Millisecond), w.p.Period), now)
		return w.state
	}
	w.set(true, "", now)
	return w.state
}

// failed takes a failure to read the CPU times: the node cannot tell
// whether its owner needs the host, so it does not bid, and measures
// afresh.
func (w *idleWatch) failed(err error, now time.Time) HostState {
	w.at, w.quiet = time.Time{}, time.Time{}
	w.set(false, "host busy: cannot read its CPU use: "+err.Error(), now)
	return w.state
}

func (w *idleWatch) set(idle bool, reason string, now time.Time) {
	if idle != w.state.Idle {
		w.state.Since = now
	}
	w.state.Idle, w.state.Reason = idle, reason
}

// percent prints a share as a whole percentage: 0.634 as "63%".
func percent(share float64) string { return strconv.Itoa(int(math.Round(share*100))) + "%" }
