package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/policy"
)

// Auth modes of an endpoint.
const (
	AuthNone = "none" // anyone may call it (within its policy)
	AuthKey  = "key"  // the caller sends a key of the endpoint's account
)

// CreateEndpoint publishes an endpoint at /e/NAME/. Endpoint names are
// global (they are the gateway's URL namespace): a name another account
// holds is ErrConflict "endpoint name taken". A malformed spec is a
// *jobs.SpecError naming each bad field.
func (s *scope) CreateEndpoint(ctx context.Context, spec EndpointSpec) (Endpoint, error) {
	spec = normalized(spec)
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	if err := s.g.checkEndpoint(s.account, spec); err != nil {
		return Endpoint{}, err
	}
	now := s.g.now()
	ep := Endpoint{EndpointSpec: spec, Account: s.account, Path: "/e/" + spec.Name + "/", CreatedAt: now, UpdatedAt: now}
	err := s.g.update(ctx, func(t *tx) error {
		var old Endpoint
		switch found, err := t.lookup(endpointKey(spec.Name), &old); {
		case err != nil:
			return err
		case found && old.Account == s.account:
			return fmt.Errorf("%w: endpoint %q exists", api.ErrConflict, spec.Name)
		case found:
			return fmt.Errorf("%w: endpoint name taken", api.ErrConflict)
		}
		t.set(endpointKey(spec.Name), ep)
		return nil
	})
	if err != nil {
		return Endpoint{}, err
	}
	return s.g.withQuota(ep)
}

// UpdateEndpoint replaces an endpoint's spec; its quota count stays.
func (s *scope) UpdateEndpoint(ctx context.Context, spec EndpointSpec) (Endpoint, error) {
	spec = normalized(spec)
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	if _, err := s.g.endpoint(s.account, spec.Name); err != nil {
		return Endpoint{}, err
	}
	if err := s.g.checkEndpoint(s.account, spec); err != nil {
		return Endpoint{}, err
	}
	var ep Endpoint
	err := s.g.update(ctx, func(t *tx) error {
		var err error
		if ep, err = txEndpoint(t, s.account, spec.Name); err != nil {
			return err
		}
		ep.EndpointSpec, ep.UpdatedAt = spec, s.g.now()
		t.set(endpointKey(spec.Name), ep)
		return nil
	})
	if err != nil {
		return Endpoint{}, err
	}
	return s.g.withQuota(ep)
}

// normalized is spec with its defaults filled in.
func normalized(spec EndpointSpec) EndpointSpec {
	if spec.Auth == "" {
		spec.Auth = AuthNone
	}
	spec.Tags = tagsOrNil(spec.Tags)
	return spec
}

// DeleteEndpoint removes an endpoint and its quota counts.
func (s *scope) DeleteEndpoint(ctx context.Context, name string) error {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	return s.g.update(ctx, func(t *tx) error {
		if _, err := txEndpoint(t, s.account, name); err != nil {
			return err
		}
		counts, err := s.g.quotaRecords(name)
		t.delete(append(counts, endpointKey(name))...)
		return err
	})
}

// GetEndpoint returns one endpoint, with today's count.
func (s *scope) GetEndpoint(ctx context.Context, name string) (Endpoint, error) {
	ep, err := s.g.endpoint(s.account, name)
	if err != nil {
		return Endpoint{}, err
	}
	return s.g.withQuota(ep)
}

// ListEndpoints lists the account's endpoints that match q, sorted by
// q.Sort (name or created), with today's counts.
func (s *scope) ListEndpoints(ctx context.Context, q Query) ([]Endpoint, error) {
	eps, err := s.g.endpointsOf(s.account)
	if err != nil {
		return nil, err
	}
	var out []Endpoint
	for _, ep := range eps {
		if !q.match(ep.Name, ep.Tags) {
			continue
		}
		if ep, err = s.g.withQuota(ep); err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	return out, endpointOrders.sort(out, q.Sort, func(e Endpoint) string { return e.Name })
}

// endpoint reads an account's endpoint; ErrNotFound if there is none or
// it is another account's.
func (g *Gateway) endpoint(acct, name string) (Endpoint, error) {
	ep, err := g.anyEndpoint(name)
	if err == nil && ep.Account != acct {
		return Endpoint{}, notFound("endpoint", name)
	}
	return ep, err
}

// txEndpoint reads an account's endpoint in a change.
func txEndpoint(t *tx, acct, name string) (Endpoint, error) {
	ep, err := txFind[Endpoint](t, functionName.MatchString(name), endpointKey(name), "endpoint", name)
	if err == nil && ep.Account != acct {
		return Endpoint{}, notFound("endpoint", name)
	}
	return ep, err
}

// quotaRecords lists the keys of an endpoint's quota counts and
// admissions, which go with it.
func (g *Gateway) quotaRecords(ep string) ([]string, error) {
	counts, err := keys(g.db, quotasOf(ep))
	if err != nil {
		return nil, err
	}
	admits, err := keys(g.db, admitsOf(ep))
	return append(counts, admits...), err
}

// anyEndpoint reads an endpoint, whichever account's it is; ErrNotFound if
// there is none.
func (g *Gateway) anyEndpoint(name string) (Endpoint, error) {
	return findFresh[Endpoint](g.ctx, g, functionName.MatchString(name), endpointKey(name), "endpoint", name)
}

// endpointsOf reads an account's endpoints, by name.
func (g *Gateway) endpointsOf(acct string) ([]Endpoint, error) {
	var out []Endpoint
	err := each(g.db, endpointPrefix, func(_ string, ep Endpoint) error {
		if ep.Account == acct {
			out = append(out, ep)
		}
		return nil
	})
	return out, err
}

// withQuota fills in an endpoint's count of the current quota day.
func (g *Gateway) withQuota(ep Endpoint) (Endpoint, error) {
	pol, err := policyOf(ep.EndpointSpec)
	if err != nil {
		return Endpoint{}, err
	}
	now := g.now()
	count := quotaKey(ep.Name, pol.Day(now))
	if pol.DailyQuota == 0 {
		count = epCallsKey(ep.Name, pol.Day(now))
	}
	if _, err := g.db.Lookup(count, &ep.Today); err != nil {
		return Endpoint{}, err
	}
	ep.ResetsAt = pol.ResetAt(now)
	if pol.DailyQuota > 0 {
		left := max(pol.DailyQuota-ep.Today, 0)
		ep.Remaining = &left
	}
	return ep, nil
}

// checkEndpoint reports every problem of an endpoint spec: its name, its
// function and revision (which must exist in the account), its policy,
// its auth mode and its tags.
func (g *Gateway) checkEndpoint(acct string, spec EndpointSpec) error {
	var p problems
	if !functionName.MatchString(spec.Name) {
		p.add("name", "%s: want %s", quote(spec.Name), functionRule)
	}
	if err := g.checkTarget(&p, acct, spec); err != nil {
		return err
	}
	checkPolicy(&p, spec)
	if spec.Auth != AuthNone && spec.Auth != AuthKey {
		p.add("auth", "%s: want %s or %s", quote(spec.Auth), AuthNone, AuthKey)
	}
	checkTags(&p, spec.Tags)
	return p.err()
}

// checkTarget reports an endpoint's function or revision that the account
// does not have.
func (g *Gateway) checkTarget(p *problems, acct string, spec EndpointSpec) error {
	fn, err := g.function(acct, spec.Function)
	switch {
	case spec.Function == "":
		p.add("function", "required")
		return nil
	case errors.Is(err, api.ErrNotFound):
		p.add("function", "no function %s in this account", quote(spec.Function))
		return nil
	case err != nil:
		return err
	}
	if spec.Revision < 0 || spec.Revision > fn.LatestRevision {
		p.add("revision", "function %q has no revision %d (its latest is %d; 0 follows its default)", fn.Name, spec.Revision, fn.LatestRevision)
	}
	return nil
}

// policyOf is an endpoint's policy.
func policyOf(spec EndpointSpec) (policy.Policy, error) {
	return policy.Parse(spec.AllowIPs, spec.Windows, spec.DailyQuota, spec.Zone)
}

// checkPolicy reports each allowlist entry, window, zone or quota of an
// endpoint's policy that is malformed; policy.Parse stops at the first.
func checkPolicy(p *problems, spec EndpointSpec) {
	for i, s := range spec.AllowIPs {
		if _, err := policy.ParsePrefix(s); err != nil {
			p.add(fmt.Sprintf("allow_ips[%d]", i), "%s", problem(err))
		}
	}
	for i, s := range spec.Windows {
		if _, err := policy.ParseWindow(s); err != nil {
			p.add(fmt.Sprintf("windows[%d]", i), "%s", problem(err))
		}
	}
	if spec.Zone != "" {
		if _, err := policy.LoadZone(spec.Zone); err != nil {
			p.add("zone", "%s", problem(err))
		}
	}
	if spec.DailyQuota < 0 {
		p.add("daily_quota", "%d: want 0 (no quota) or a number of calls a day", spec.DailyQuota)
	}
}

// problem is a policy error as a field's problem, without the sentinel's
// prefix.
func problem(err error) string {
	return strings.TrimPrefix(err.Error(), policy.ErrInvalid.Error()+": ")
}
