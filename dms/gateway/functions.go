package gateway

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// DefaultMaxBody bounds a call's body when a deploy sets no max_body. A
// body travels as the job's stdin, so no max_body is over jobs.MaxStdin.
const DefaultMaxBody = types.Bytes(1 << 20)

// maxFunctionArgsEnv bounds a revision's own args and env together: the
// rest of jobs.MaxArgsEnv is left to each call's CGI variables.
const maxFunctionArgsEnv = jobs.MaxArgsEnv / 2

// PutModule stores a module (or image archive) on the node.
func (s *scope) PutModule(ctx context.Context, r io.Reader) (string, error) {
	return s.g.runner.PutBlob(ctx, r)
}

// Deploy makes the function's next revision, the function itself on its
// first deploy. A malformed deploy is a *jobs.SpecError naming each bad
// field; its module must be a blob the node holds or can fetch.
func (s *scope) Deploy(ctx context.Context, d Deploy) (Revision, error) {
	rev := revisionOf(d, s.g.now())
	if err := s.g.checkDeploy(ctx, d, rev); err != nil {
		return Revision{}, err
	}
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	// The machine's change makes the pools of the function's queue
	// rescale, on the member that leads it.
	err := s.g.update(ctx, func(t *tx) error {
		var err error
		rev, err = s.deploy(t, d, rev)
		return err
	})
	if err != nil {
		return Revision{}, err
	}
	return rev, nil
}

// deploy stages the write of a deploy's revision, and of its function.
func (s *scope) deploy(t *tx, d Deploy, rev Revision) (Revision, error) {
	var fn Function
	found, err := t.lookup(functionKey(s.account, d.Name), &fn)
	if err != nil {
		return Revision{}, err
	}
	if !found {
		fn = Function{Name: d.Name, Account: s.account, CreatedAt: rev.CreatedAt}
	}
	fn.LatestRevision++
	rev.Number = fn.LatestRevision
	if !found || !d.NoDefault {
		fn.DefaultRevision = rev.Number
	}
	if d.Tags != nil {
		fn.Tags = tagsOrNil(d.Tags)
	}
	switch {
	case d.Scaling != nil:
		fn.Scaling = d.Scaling.withDefaults()
	case !found:
		fn.Scaling = Scaling{}.withDefaults()
	}
	fn.UpdatedAt = rev.CreatedAt
	t.set(functionKey(s.account, d.Name), fn)
	t.set(revisionKey(s.account, d.Name, rev.Number), rev)
	if !found {
		t.delete(callsKey(s.account, d.Name)) // a late call of a function of that name deleted before
	}
	return rev, nil
}

// revisionOf is the revision d makes, with the defaults filled in.
func revisionOf(d Deploy, now time.Time) Revision {
	r := Revision{
		Function: d.Name, Executor: cmp.Or(d.Executor, jobs.DefaultExecutor), Module: d.Module, Image: d.Image,
		Args: slices.Clone(d.Args), Env: maps.Clone(d.Env), Resources: d.Resources,
		Timeout: cmp.Or(d.Timeout, jobs.Duration(jobs.DefaultTimeout)), MaxBody: cmp.Or(d.MaxBody, DefaultMaxBody),
		CreatedAt: now,
	}
	r.Resources.CPU = cmp.Or(r.Resources.CPU, jobs.DefaultCPU)
	r.Resources.Memory = cmp.Or(r.Resources.Memory, jobs.DefaultMemory)
	return r
}

func tagsOrNil(tags map[string]string) map[string]string {
	if len(tags) == 0 {
		return nil
	}
	return maps.Clone(tags)
}

// checkDeploy reports every problem of a deploy: its name, the job its
// revision runs, its body limit, its tags, and last (it may fetch from the
// network) whether its module is a blob to be had.
func (g *Gateway) checkDeploy(ctx context.Context, d Deploy, rev Revision) error {
	var p problems
	if !functionName.MatchString(d.Name) {
		p.add("name", "%s: want %s", quote(d.Name), functionRule)
	}
	checkRevision(&p, rev)
	checkTags(&p, d.Tags)
	if d.Scaling != nil {
		d.Scaling.withDefaults().check(&p)
	}
	if len(p) == 0 {
		g.checkModule(ctx, &p, rev.Module)
	}
	return p.err()
}

// checkRevision checks the job a revision runs with jobs.Spec.Validate,
// naming the deploy's fields, and what the gateway asks more: a module
// named by its CID, room left for a call's CGI variables, a body limit
// within jobs.MaxStdin.
func checkRevision(p *problems, rev Revision) {
	spec := jobSpec(rev)
	spec.Name = "deploy" // the job's name is the gateway's, never the deploy's
	if err, ok := spec.Validate().(*jobs.SpecError); ok {
		for _, fe := range err.Problems {
			if fe.Field == "image_archive" {
				fe.Field = "module"
			}
			*p = append(*p, fe)
		}
	}
	if _, err := cid.Decode(rev.Module); rev.Module != "" && err != nil {
		p.add("module", "%s is not a CID: upload the module first (PutModule) and deploy its CID", quote(rev.Module))
	}
	if n := argsEnvSize(rev); n > maxFunctionArgsEnv && n <= jobs.MaxArgsEnv {
		p.add("args", "args and env hold %d bytes together; a function may use %d, leaving the rest of %d to each call's CGI variables",
			n, maxFunctionArgsEnv, jobs.MaxArgsEnv)
	}
	if rev.MaxBody < 1 || rev.MaxBody > jobs.MaxStdin {
		p.add("max_body", "%d bytes: want 1 to %d (a body travels as the job's stdin)", rev.MaxBody, jobs.MaxStdin)
	}
}

// argsEnvSize is the bytes of a revision's args and env, as jobs counts them.
func argsEnvSize(rev Revision) int {
	n := 0
	for _, a := range rev.Args {
		n += len(a)
	}
	for k, v := range rev.Env {
		n += len(k) + len(v)
	}
	return n
}

// checkModule reports a module CID that names no blob the node holds or
// can fetch.
func (g *Gateway) checkModule(ctx context.Context, p *problems, module string) {
	if module == "" {
		return // a docker function that names its image only
	}
	if ok, err := g.runner.HasBlob(ctx, module); err == nil && ok {
		return
	}
	if _, err := g.runner.GetBlob(ctx, module); err != nil {
		p.add("module", "no blob %s on this node or the network: upload it first (%s)", module, err.Error())
	}
}

// ListFunctions lists the account's functions that match q, sorted by
// q.Sort.
func (s *scope) ListFunctions(ctx context.Context, q Query) ([]Function, error) {
	calls, prefix := map[string]int64{}, callsOf(s.account)
	err := each(s.g.db, prefix, func(key string, n int64) error {
		calls[strings.TrimPrefix(key, prefix)] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Function
	err = each(s.g.db, functionsOf(s.account), func(_ string, f Function) error {
		if q.match(f.Name, f.Tags) {
			f.Calls = calls[f.Name]
			out = append(out, f)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, functionOrders.sort(out, q.Sort, func(f Function) string { return f.Name })
}

// GetFunction returns one function.
func (s *scope) GetFunction(ctx context.Context, name string) (Function, error) {
	fn, err := s.g.function(s.account, name)
	if err != nil {
		return Function{}, err
	}
	_, err = s.g.db.Lookup(callsKey(s.account, name), &fn.Calls)
	return fn, err
}

// function reads an account's function, without its calls; ErrNotFound
// if there is none.
func (g *Gateway) function(acct, name string) (Function, error) {
	key := functionKey(acct, name)
	if fn, ok := g.functions.get(key); ok {
		return fn, nil
	}
	gen := g.functions.generation()
	fn, err := findFresh[Function](g.ctx, g, functionName.MatchString(name), key, "function", name)
	if err == nil {
		g.functions.put(key, fn, gen)
	}
	return fn, err
}

// fnCache holds function records as read, so a call does not read and
// decode its function's record. Every write of a function record calls
// forget after the write: a reader that read before it (an older
// generation) does not store what it read.
type fnCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]Function
}

// maxCachedFunctions bounds the cache; a full cache starts again empty.
const maxCachedFunctions = 10_000

func (c *fnCache) get(key string) (Function, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn, ok := c.m[key]
	return fn, ok
}

func (c *fnCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put keeps fn, read at generation gen, unless a write came since.
func (c *fnCache) put(key string, fn Function, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= maxCachedFunctions {
		c.m = make(map[string]Function)
	}
	c.m[key] = fn
}

// reset drops every record (the records were replaced).
func (c *fnCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m = nil
}

// forget drops a function's record after it was written or deleted.
func (c *fnCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, key)
}

// Revisions lists a function's revisions, oldest first.
func (s *scope) Revisions(ctx context.Context, name string) ([]Revision, error) {
	if _, err := s.g.function(s.account, name); err != nil {
		return nil, err
	}
	return all[Revision](s.g.db, revisionsOf(s.account, name))
}

// revision reads revision n of a function, its default one when n is 0;
// ErrNotFound naming what is missing. A revision named by its number is
// read alone: revisions go with their function, in the one write that
// deletes it.
func (g *Gateway) revision(acct, name string, n int) (Revision, error) {
	if rev, ok := g.revisions.get(poolKey{acct, name, n}); ok {
		return rev, nil
	}
	var rev Revision
	if n > 0 && functionName.MatchString(name) {
		gen := g.revisions.generation()
		if found, err := g.db.Lookup(revisionKey(acct, name, n), &rev); err != nil || found {
			if found {
				g.revisions.put(poolKey{acct, name, n}, rev, gen)
			}
			return rev, err
		}
	}
	fn, err := g.function(acct, name)
	if err != nil {
		return Revision{}, err
	}
	if n == 0 {
		n = fn.DefaultRevision
	}
	found, err := g.db.Lookup(revisionKey(acct, name, n), &rev)
	if err == nil && !found {
		err = noRevision(fn, n)
	}
	return rev, err
}

// noRevision is the error for a revision n fn does not have.
func noRevision(fn Function, n int) error {
	return fmt.Errorf("%w: function %q has no revision %d (its latest is %d)", api.ErrNotFound, fn.Name, n, fn.LatestRevision)
}

// SetDefault switches the function's default revision.
func (s *scope) SetDefault(ctx context.Context, name string, rev int) (Function, error) {
	fn, err := s.change(ctx, name, func(fn *Function) error {
		if rev < 1 || rev > fn.LatestRevision {
			return noRevision(*fn, rev)
		}
		fn.DefaultRevision = rev
		return nil
	})
	return fn, err
}

// SetTags replaces the function's tags.
func (s *scope) SetTags(ctx context.Context, name string, tags map[string]string) (Function, error) {
	var p problems
	if checkTags(&p, tags); len(p) > 0 {
		return Function{}, p.err()
	}
	return s.change(ctx, name, func(fn *Function) error {
		fn.Tags = tagsOrNil(tags)
		return nil
	})
}

// change applies edit to a function and writes it.
func (s *scope) change(ctx context.Context, name string, edit func(*Function) error) (Function, error) {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	var fn Function
	err := s.g.update(ctx, func(t *tx) error {
		var err error
		if fn, err = txFind[Function](t, functionName.MatchString(name), functionKey(s.account, name), "function", name); err != nil {
			return err
		}
		if err := edit(&fn); err != nil {
			return err
		}
		fn.UpdatedAt = s.g.now()
		t.set(functionKey(s.account, name), fn)
		return nil
	})
	if err != nil {
		return Function{}, err
	}
	_, err = s.g.db.Lookup(callsKey(s.account, name), &fn.Calls)
	return fn, err
}

// DeleteFunction removes the function, its revisions, its call count and
// its endpoints with their quota counts, in one write. Its tasks stay
// until their retention ends.
func (s *scope) DeleteFunction(ctx context.Context, name string) error {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	// The machine's change closes the function's pools where they are.
	return s.g.update(ctx, func(t *tx) error {
		if _, err := txFind[Function](t, functionName.MatchString(name), functionKey(s.account, name), "function", name); err != nil {
			return err
		}
		del, err := keys(s.g.db, revisionsOf(s.account, name))
		if err != nil {
			return err
		}
		t.delete(append(del, functionKey(s.account, name), callsKey(s.account, name), queueKey(s.account, name))...)
		eps, err := s.g.endpointsOf(s.account)
		if err != nil {
			return err
		}
		for _, e := range eps {
			if e.Function == name {
				counts, err := s.g.quotaRecords(e.Name)
				if err != nil {
					return err
				}
				t.delete(append(counts, endpointKey(e.Name))...)
			}
		}
		return nil
	})
}
