package wasm

import (
	"container/list"
	"context"
	"sync"
)

// Stats counts the compiled-module cache's work.
type Stats struct {
	Compiles  int64 // modules compiled (cache misses)
	Hits      int64 // runs that found their module compiled or compiling
	Evictions int64 // modules dropped to stay within MaxCachedModules
	Cached    int   // modules held now
}

// cache holds compiled programs by module ID, least recently used at the
// back of order. A program is compiled by the first run that needs it; runs
// that arrive meanwhile wait for that compilation instead of starting their
// own. An entry in use is never evicted, so the cache may exceed max while
// more than max programs run at once.
type cache struct {
	compile func(ctx context.Context, bin []byte) (*program, error)

	mu    sync.Mutex
	max   int
	order *list.List // of *entry, most recently used first
	byID  map[string]*list.Element
	stats Stats
}

type entry struct {
	id    string
	ready chan struct{} // closed once prog or err is set
	prog  *program
	err   error
	users int // runs holding prog; guarded by cache.mu
}

func newCache(max int, compile func(context.Context, []byte) (*program, error)) *cache {
	return &cache{compile: compile, max: max, order: list.New(), byID: make(map[string]*list.Element)}
}

// get returns the program for id, compiling what load returns if no run
// has: a cached program's bytes are never read. The caller must call
// release once done with the program.
func (c *cache) get(ctx context.Context, id string, load func() ([]byte, error)) (*program, func(), error) {
	e, compiler := c.acquire(id)
	if compiler {
		var bin []byte
		if bin, e.err = load(); e.err == nil {
			e.prog, e.err = c.compile(ctx, bin)
		}
		close(e.ready)
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		c.release(e)
		return nil, nil, ctx.Err()
	}
	if e.err != nil {
		c.release(e)
		return nil, nil, e.err
	}
	return e.prog, func() { c.release(e) }, nil
}

// acquire finds or adds the entry for id and counts the caller as a user.
// compiler is true for the caller that must compile it.
func (c *cache) acquire(id string) (e *entry, compiler bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		c.order.MoveToFront(el)
		c.stats.Hits++
		e = el.Value.(*entry)
		e.users++
		return e, false
	}
	e = &entry{id: id, ready: make(chan struct{}), users: 1}
	c.byID[id] = c.order.PushFront(e)
	c.stats.Compiles++
	return e, true
}

// release drops a user of e, forgets e if its compilation failed, and
// evicts what is over the bound.
func (c *cache) release(e *entry) {
	c.mu.Lock()
	e.users--
	if el := c.byID[e.id]; el != nil && el.Value == e && e.failed() {
		c.forget(el)
	}
	evicted := c.evict()
	c.mu.Unlock()
	for _, p := range evicted {
		p.close()
	}
}

// failed reports whether e finished compiling with an error. A failure is
// not cached: the next run tries again.
func (e *entry) failed() bool {
	select {
	case <-e.ready:
		return e.err != nil
	default:
		return false
	}
}

// evict removes idle entries from the back until at most max remain, and
// returns their programs to close. Called with mu held.
func (c *cache) evict() []*program {
	var out []*program
	for el := c.order.Back(); el != nil && c.order.Len() > c.max; {
		prev := el.Prev()
		if e := el.Value.(*entry); e.users == 0 {
			c.forget(el)
			c.stats.Evictions++
			out = append(out, e.prog)
		}
		el = prev
	}
	return out
}

func (c *cache) forget(el *list.Element) {
	c.order.Remove(el)
	delete(c.byID, el.Value.(*entry).id)
}

func (c *cache) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Cached = c.order.Len()
	return s
}
