package bench

import (
	"errors"
	"testing"
	"time"
)

// readRecovery on made-up loads: when the calls were served again after a
// fault at t0.
func TestReadRecovery(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	call := func(sent, done int, failed bool) timedCall {
		c := timedCall{sent: at(sent), done: at(done)}
		if failed {
			c.err = errors.New("refused")
		}
		return c
	}
	cases := []struct {
		name   string
		calls  []timedCall
		took   time.Duration
		failed int
		ok     bool
	}{
		{"nothing after the fault", []timedCall{call(-10, -5, false)}, 0, 0, false},
		{"no failure: the first call sent after the fault, not one sent before", []timedCall{call(-10, -5, false), call(-2, 3, false), call(1, 700, false), call(2, 800, false)}, 700 * time.Millisecond, 0, true},
		{"a stall: served only when the new leader is there", []timedCall{call(1, 1500, false), call(2, 1400, false)}, 1400 * time.Millisecond, 0, true},
		{"failures, then served", []timedCall{call(-5, 10, true), call(20, 30, true), call(40, 900, true), call(35, 950, false), call(901, 905, false)}, 905 * time.Millisecond, 3, true},
		{"failures, nothing served since", []timedCall{call(0, 10, false), call(20, 30, true)}, 0, 1, false},
	}
	for _, c := range cases {
		r := readRecovery(c.calls, t0)
		if r.took != c.took || len(r.failed) != c.failed || r.ok != c.ok {
			t.Errorf("%s: took %s, %d failed, ok %v; want %s, %d, %v", c.name, r.took, len(r.failed), r.ok, c.took, c.failed, c.ok)
		}
	}
}
