package node

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opendms/dms/types"
)

// Snapshot is the immutable view a bid decision is made on. The actor takes
// it from its own state; checks only read it. The decision is optimistic:
// the Lock at Accept time re-checks capability.
type Snapshot struct {
	Admission Admission         // who may use the node
	Executors map[string]bool   // executors this node can run, by name
	Network   bool              // the node lets jobs that ask for a network have one
	Labels    map[string]string // the provider's labels
	Energy    types.Energy
	Price     types.Credits // per core-hour
	// Host says why an idle-only node's host is not idle ("host busy:
	// ..."); "" when it is, or the node is not idle-only.
	Host       string
	Registered types.Resources
	Available  types.Resources
}

// Check is one step of the bid decision. Check returns the reasons the node
// cannot bid, written for the submitter; none means the request passes.
type Check interface {
	Name() string
	Check(req *types.BidRequest, s *Snapshot) []string
}

// checkFunc adapts a function to Check.
type checkFunc struct {
	name string
	fn   func(req *types.BidRequest, s *Snapshot) []string
}

var _ Check = checkFunc{}

func (c checkFunc) Name() string                                      { return c.name }
func (c checkFunc) Check(req *types.BidRequest, s *Snapshot) []string { return c.fn(req, s) }

// DefaultChecks returns the node's bid pipeline, cheapest and most static
// check first. Every check is cheap, so the order is chosen for what the
// submitter reads: the first failing check is reported, and a reason that
// never changes (no such executor, wrong labels) says more than one that
// changes with the weather (energy), the provider's pricing, or the load of
// the moment: the node's own (resources), then, last, its host's owner's
// (host), so that a request the node can never serve says so, not that the
// host is busy.
// Admission comes first: a requester the node refuses learns that, and
// nothing about the node's offer.
func DefaultChecks() []Check {
	return []Check{
		checkFunc{"admission", checkAdmission},
		checkFunc{"executor", checkExecutor},
		checkFunc{"network", checkNetwork},
		checkFunc{"labels", checkLabels},
		checkFunc{"energy", checkEnergy},
		checkFunc{"price", checkPrice},
		checkFunc{"resources", checkResources},
		checkFunc{"host", checkHost},
	}
}

// Decide runs checks in order and stops at the first that fails, returning
// all of that check's reasons. No reasons means the node bids.
func Decide(checks []Check, req *types.BidRequest, s *Snapshot) []string {
	for _, c := range checks {
		if reasons := c.Check(req, s); len(reasons) > 0 {
			return reasons
		}
	}
	return nil
}

func checkExecutor(req *types.BidRequest, s *Snapshot) []string {
	if s.Executors[req.Executor] {
		return nil
	}
	var have []string
	for name, ok := range s.Executors {
		if ok {
			have = append(have, name)
		}
	}
	slices.Sort(have)
	list := strings.Join(have, ", ")
	if list == "" {
		list = "none"
	}
	return []string{fmt.Sprintf("executor: %q not available (have %s)", req.Executor, list)}
}

func checkNetwork(req *types.BidRequest, s *Snapshot) []string {
	if req.Network && !s.Network {
		return []string{"network: the job asks for a network; this node gives jobs none"}
	}
	return nil
}

func checkLabels(req *types.BidRequest, s *Snapshot) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(req.Constraints.Labels)) {
		want := req.Constraints.Labels[k]
		got, ok := s.Labels[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("labels: need %s=%s, have no %s label", k, want, k))
		case got != want:
			out = append(out, fmt.Sprintf("labels: need %s=%s, have %s=%s", k, want, k, got))
		}
	}
	return out
}

func checkEnergy(req *types.BidRequest, s *Snapshot) []string {
	if req.Constraints.RenewableOnly && !s.Energy.Renewable {
		return []string{"energy: job needs renewable energy"}
	}
	return nil
}

func checkPrice(req *types.BidRequest, s *Snapshot) []string {
	if limit := req.Constraints.MaxPrice; limit > 0 && s.Price > limit {
		return []string{fmt.Sprintf("price: %s per core-hour over max %s", s.Price, limit)}
	}
	return nil
}

// checkHost declines while an idle-only node's host is not idle: its
// owner uses it, or has not left it idle for long enough.
func checkHost(_ *types.BidRequest, s *Snapshot) []string {
	if s.Host != "" {
		return []string{s.Host}
	}
	return nil
}

// checkResources tells a request the node can never serve (over what is
// registered, or for no cpu or no memory) from one it cannot serve now
// (busy).
func checkResources(req *types.BidRequest, s *Snapshot) []string {
	need := req.Resources
	if need.Negative() {
		return []string{fmt.Sprintf("resources: negative quantity requested (%s)", need)}
	}
	if out := need.Shortfall(s.Registered); len(out) > 0 {
		return out
	}
	if need.CPU <= 0 || need.Memory <= 0 {
		// No valid job is like that (jobs.Validate), and a hold of nothing
		// would cost the node memory and no capability.
		return []string{fmt.Sprintf("resources: a job asks for some cpu and some memory, not %s", need)}
	}
	out := shortfall(need, s.Available)
	for i := range out {
		out[i] += " (busy)"
	}
	return out
}
