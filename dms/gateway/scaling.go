package gateway

import (
	"cmp"
	"context"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Defaults and bounds of a function's Scaling.
const (
	DefaultMaxInstances = 10
	DefaultConcurrency  = 8
	DefaultKeepAlive    = 10 * time.Minute
	DefaultMaxQueue     = 1000
	MaxInstances        = 1000
	MaxQueue            = 100_000
)

// withDefaults fills s's zero fields (but MinInstances) with the defaults.
func (s Scaling) withDefaults() Scaling {
	s.MaxInstances = cmp.Or(s.MaxInstances, max(DefaultMaxInstances, s.MinInstances))
	s.Concurrency = cmp.Or(s.Concurrency, DefaultConcurrency)
	s.KeepAlive = cmp.Or(s.KeepAlive, jobs.Duration(DefaultKeepAlive))
	s.MaxQueue = cmp.Or(s.MaxQueue, DefaultMaxQueue)
	return s
}

// check reports what is wrong with s, defaults filled in.
func (s Scaling) check(p *problems) {
	switch {
	case s.MinInstances < 0 || s.MinInstances > MaxInstances:
		p.add("scaling.min_instances", "%d: want 0 (scale to zero) to %d", s.MinInstances, MaxInstances)
	case s.MaxInstances < 1 || s.MaxInstances > MaxInstances:
		p.add("scaling.max_instances", "%d: want 1 to %d", s.MaxInstances, MaxInstances)
	case s.MinInstances > s.MaxInstances:
		p.add("scaling.min_instances", "%d is over max_instances %d", s.MinInstances, s.MaxInstances)
	}
	if s.Concurrency < 1 || s.Concurrency > types.MaxWarmConcurrency {
		p.add("scaling.concurrency", "%d: want 1 to %d calls at once per instance", s.Concurrency, types.MaxWarmConcurrency)
	}
	if k := time.Duration(s.KeepAlive); k < types.MinKeepAlive || k > types.MaxKeepAlive {
		p.add("scaling.keep_alive", "%s: want %s to %s", s.KeepAlive, types.MinKeepAlive, types.MaxKeepAlive)
	}
	if s.MaxQueue < 1 || s.MaxQueue > MaxQueue {
		p.add("scaling.max_queue", "%d: want 1 to %d calls waiting", s.MaxQueue, MaxQueue)
	}
}

// SetScaling replaces the function's scaling (zero fields: the defaults).
// Its queues take it at once: more instances are started for a higher
// minimum; a lower maximum lets the extra ones idle out.
func (s *scope) SetScaling(ctx context.Context, name string, sc Scaling) (Function, error) {
	sc = sc.withDefaults()
	var p problems
	if sc.check(&p); len(p) > 0 {
		return Function{}, p.err()
	}
	fn, err := s.change(ctx, name, func(fn *Function) error {
		fn.Scaling = sc
		return nil
	})
	return fn, err
}

// Instances lists the warm instances of the account's function, of every
// revision.
func (s *scope) Instances(ctx context.Context, name string) ([]Instance, error) {
	if _, err := s.g.function(s.account, name); err != nil {
		return nil, err
	}
	return s.g.pools.instances(s.account, name), nil
}
