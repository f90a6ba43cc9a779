package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/group"
	"github.com/opendms/dms/types"
)

// A gateway in a group. The group (package group: raft over the node's
// libp2p host) commits the machine's commands; every member applies them
// and so holds every shared record. Each function's queue, and the warm
// instances behind it, is led by one member, its Queue record says
// which: the member with the fewest queues when the function was first
// called, OpenWhisk-style, with the next two as its followers. A member
// that is not a function's leader forwards its calls to the leader
// (Forwarder); the group's raft leader moves the queues of a member it
// has lost to their first live follower. Tasks the group keeps (async and
// keyed calls) run on the leader of their function's queue, whichever
// member took them: a new leader runs the ones its predecessor left.

// Forwarder is what a gateway in a group needs of its node: forwarding a
// call to the member that leads its function's queue, and learning a
// member's address. *dms.DMS implements it over one long-lived libp2p
// stream per member.
type Forwarder interface {
	Forward(ctx context.Context, to string, req *types.CallRequest) (*types.CallReply, error)
	AddPeerAddr(addr string) (string, error)
	// Fetch keeps blob cid on this node, fetched (and verified) from the
	// first of from that holds it.
	Fetch(ctx context.Context, cid string, from []string) error
}

// Queue says which member leads a function's queue, and which follow it
// (take over, in order, when it is lost). Epoch counts its leaders.
type Queue struct {
	Leader    string   `json:"leader"`
	Followers []string `json:"followers,omitempty"`
	Epoch     uint64   `json:"epoch"`
}

// Timing of a group.
const (
	// followers is how many members follow each queue.
	followers = 2
	// failoverWait bounds how long a call whose queue's leader is lost
	// waits for its queue to move.
	failoverWait = 5 * time.Second
	// rebalanceEvery is how often the raft leader checks the queues'
	// leaders even when nothing woke it.
	rebalanceEvery = 250 * time.Millisecond
	// cutOffForward bounds a forward from a member cut off from its
	// group.
	cutOffForward = time.Second
	// healthCheck is how often a call waiting for its queue to move looks
	// whether this member is cut off.
	healthCheck = 100 * time.Millisecond
	// refusedPause is the first pause before a call refused by the member
	// its queue's record names goes to it again (awaitLeader); each
	// refusal doubles it, up to maxRefusedPause.
	refusedPause    = 10 * time.Millisecond
	maxRefusedPause = 250 * time.Millisecond
)

// GroupStatus describes a gateway's group.
type GroupStatus struct {
	Name    string        `json:"name"`
	Self    string        `json:"self"`
	Leader  string        `json:"leader"`
	Healthy bool          `json:"healthy"`
	Members []GroupMember `json:"members"`
	Queues  []QueueStatus `json:"queues"`
}

// GroupMember is one member of a group.
type GroupMember struct {
	ID     string `json:"id"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"` // the raft leader
	Alive  bool   `json:"alive"`
	Queues int    `json:"queues"` // queues it leads
}

// QueueStatus is a function's queue and its leaders.
type QueueStatus struct {
	Account  string `json:"account"`
	Function string `json:"function"`
	Queue
}

// Join makes the gateway a member of grp, as self, forwarding calls with
// fw; before Start, once. grp must have been opened with g.StateMachine().
func (g *Gateway) Join(grp *group.Group, name, self string, fw Forwarder) error {
	switch {
	case grp == nil || fw == nil || self == "":
		return errors.New("gateway: Join needs a group, a forwarder and this member's ID")
	case g.grp != nil:
		return errors.New("gateway: joined twice")
	}
	g.grp, g.groupName, g.self, g.fw = grp, name, self, fw
	return nil
}

// StateMachine is the gateway's state machine, for the group it joins.
func (g *Gateway) StateMachine() group.FSM { return g.m }

// queue is the record of a function's queue, as last applied.
func (g *Gateway) queue(acct, fn string) (Queue, bool) {
	g.queuesMu.Lock()
	defer g.queuesMu.Unlock()
	q, ok := g.queues[queueKey(acct, fn)]
	return q, ok
}

// leaderMoved returns a context that ends when a function's queue's
// leader is no longer leader (the call forwarded to it is given up: a
// dial to a dead member may hang for seconds).
func (g *Gateway) leaderMoved(acct, fn, leader string) context.Context {
	g.queuesMu.Lock()
	defer g.queuesMu.Unlock()
	key := queueKey(acct, fn)
	if q, ok := g.queues[key]; !ok || q.Leader != leader {
		return doneCtx
	}
	m, ok := g.moved[key]
	if !ok {
		m.ctx, m.cancel = context.WithCancel(context.Background())
		g.moved[key] = m
	}
	return m.ctx
}

// doneCtx is a context that has ended.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// movedCtx ends when its queue's leader changes.
type movedCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// leads reports whether this gateway serves a function's queue itself:
// always when alone; in a group when the queue's record names it. A
// leader cut off from the majority goes on serving plain calls with its
// instances (they write nothing of the group's), while the majority
// moves the queue; once the partition heals it learns the queue moved and
// releases them.
func (g *Gateway) leads(acct, fn string) bool {
	if g.grp == nil {
		return true
	}
	q, ok := g.queue(acct, fn)
	return ok && q.Leader == g.self
}

// errCutOff is a member's answer when it is cut off from its group.
func errCutOff() error {
	return &api.RetryError{Err: fmt.Errorf("%w: this gateway is cut off from its group (no quorum)", api.ErrUnavailable), After: noQuorumRetry}
}

// queueLeader returns the member that leads a function's queue (this one
// included), giving the queue to the least loaded member if it has none.
func (g *Gateway) queueLeader(ctx context.Context, acct, fn string) (string, error) {
	for range maxStale {
		if q, ok := g.queue(acct, fn); ok {
			return q.Leader, nil
		}
		err := g.update(ctx, func(t *tx) error {
			var q Queue
			if found, err := t.lookup(queueKey(acct, fn), &q); err != nil || found {
				return err
			}
			if _, err := txFind[Function](t, true, functionKey(acct, fn), "function", fn); err != nil {
				return err
			}
			order := g.byLoad(nil)
			if len(order) == 0 {
				return errCutOff()
			}
			t.set(queueKey(acct, fn), Queue{Leader: order[0], Followers: order[1:min(len(order), 1+followers)], Epoch: 1})
			return nil
		})
		switch {
		case errors.Is(err, group.ErrNoQuorum) && ctx.Err() == nil:
			// The group could not tell whether the record committed (its
			// raft leader was lost meanwhile): it is read again, and
			// given again if it did not (it is written only where there
			// is none).
		case err != nil:
			return "", err
		}
	}
	return "", fmt.Errorf("%w: the queue of %q found no leader", api.ErrUnavailable, fn)
}

// byLoad lists the live members, the fewest queues led first, but those
// of skip.
func (g *Gateway) byLoad(skip map[string]bool) []string {
	load := map[string]int{}
	g.queuesMu.Lock()
	for _, q := range g.queues {
		load[q.Leader]++
	}
	g.queuesMu.Unlock()
	var out []string
	for _, m := range g.grp.Members() {
		if m.Alive && m.Voter && !skip[m.ID] {
			out = append(out, m.ID)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Or(load[a]-load[b], strings.Compare(a, b)) })
	return out
}

// awaitQueue waits until a function's queue is led by another member
// than lost, or failoverWait passes, or ctx ends. A member cut off from
// the group would wait in vain (it learns of no move): one that has heard
// from no leader for longer than an election gives up.
func (g *Gateway) awaitQueue(ctx context.Context, acct, fn, lost string) error {
	ctx, cancel := context.WithTimeout(ctx, failoverWait)
	defer cancel()
	tick := time.NewTicker(healthCheck)
	defer tick.Stop()
	var unhealthy time.Time // since when this member has heard from no leader
	for {
		changed := g.queuesChanged()
		if q, ok := g.queue(acct, fn); !ok || q.Leader != lost {
			return nil
		}
		switch {
		case g.grp.Healthy():
			unhealthy = time.Time{}
		case unhealthy.IsZero():
			unhealthy = time.Now()
		case time.Since(unhealthy) >= electionWait:
			return errCutOff()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: the leader of the queue of %q is lost and no member took it over", api.ErrUnavailable, fn)
		case <-changed:
		case <-tick.C:
		}
	}
}

// refusals are the forwards of one call that the member named leader of
// its queue refused: since when, and the pause before the next.
type refusals struct {
	since time.Time
	pause time.Duration
}

// awaitLeader follows a refusal of the member that a function's queue's
// record names (it answered that it does not lead the queue): one of the
// two has not applied the latest record. This member catches up; if its
// record then names another member, the call goes there at once. If it
// still names the one that refused, that one is behind: a follower may
// apply an entry before the raft leader's state machine does, and Sync
// waits only for what the raft leader applied (on the raft leader, not at
// all), so the member an entry names may not have applied it yet when
// the first call comes. The call goes to it again after a pause, sooner
// if a queue changes meanwhile. Neither case is a lost leader: the queue
// will not move. It gives up after failoverWait of refusals, or when ctx
// ends.
func (g *Gateway) awaitLeader(ctx context.Context, acct, fn, leader string, r *refusals) error {
	if r.since.IsZero() {
		r.since, r.pause = time.Now(), refusedPause
	}
	if time.Since(r.since) >= failoverWait {
		return fmt.Errorf("%w: member %s, named leader of the queue of %q, refused its calls for %s", api.ErrUnavailable, leader, fn, failoverWait)
	}
	changed := g.queuesChanged()
	_ = g.fresh(ctx) // one that cannot catch up goes on with what it has
	if q, ok := g.queue(acct, fn); !ok || q.Leader != leader {
		return nil
	}
	pause := time.NewTimer(r.pause)
	defer pause.Stop()
	r.pause = min(2*r.pause, maxRefusedPause)
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-changed:
	case <-pause.C:
	}
	return nil
}

// queuesChanged returns a channel closed at the next change of a queue.
func (g *Gateway) queuesChanged() <-chan struct{} {
	g.queuesMu.Lock()
	defer g.queuesMu.Unlock()
	return g.queuesCh
}

// setQueue records a queue applied (q nil: deleted), and says whether
// this member began or stopped leading it.
func (g *Gateway) setQueue(key string, q *Queue) (began, stopped bool) {
	g.queuesMu.Lock()
	defer g.queuesMu.Unlock()
	old, had := g.queues[key]
	wasMine := had && old.Leader == g.self
	if q == nil {
		delete(g.queues, key)
	} else {
		g.queues[key] = *q
	}
	if m, ok := g.moved[key]; ok && (q == nil || q.Leader != old.Leader) {
		m.cancel()
		delete(g.moved, key)
	}
	isMine := q != nil && q.Leader == g.self
	close(g.queuesCh)
	g.queuesCh = make(chan struct{})
	return isMine && !wasMine, wasMine && !isMine
}

// applied follows what a command changed, under the machine's lock: the
// caches drop what changed at once (a reader after the write never sees
// the old), and the work a change starts (running a task, a new queue's
// pools) goes on in goroutines.
func (g *Gateway) applied(effects []effect) {
	for _, e := range effects {
		switch {
		case strings.HasPrefix(e.key, functionPrefix):
			g.functions.forget(e.key)
			acct, name, _ := functionOfKey(e.key)
			if e.val == nil {
				g.revisions.forget(acct, name)
				g.background(func() { g.pools.forget(acct, name) })
				continue
			}
			var fn Function
			switch {
			case json.Unmarshal(e.val, &fn) != nil || !g.serving.Load():
			case g.leads(acct, name):
				g.background(func() { g.pools.rescale(acct, fn) })
			case fn.Scaling.MinInstances > 0 && g.grp != nil:
				// A queue to keep warm wants a leader before its first call.
				g.background(func() {
					if _, ok := g.queue(acct, name); !ok {
						_, _ = g.queueLeader(g.ctx, acct, name)
					}
				})
			}
		case strings.HasPrefix(e.key, endpointPrefix) && e.val == nil:
			ep := strings.TrimPrefix(e.key, endpointPrefix)
			g.background(func() { g.forgetEndpointCalls(ep) })
		case strings.HasPrefix(e.key, keyPrefix):
			var rec keyRecord
			if e.val == nil || json.Unmarshal(e.val, &rec) == nil && rec.RevokedAt != nil {
				g.keys.forget(strings.TrimPrefix(e.key, keyPrefix))
			}
		case strings.HasPrefix(e.key, queuePrefix):
			var q *Queue
			if e.val != nil {
				q = new(Queue)
				if json.Unmarshal(e.val, q) != nil {
					continue
				}
			}
			began, stopped := g.setQueue(e.key, q)
			acct, name, _ := strings.Cut(strings.TrimPrefix(e.key, queuePrefix), "/")
			switch {
			case began && g.serving.Load():
				g.background(func() { g.takeOver(acct, name) })
			case stopped:
				g.background(func() { g.pools.forget(acct, name) })
			}
		case strings.HasPrefix(e.key, revisionPrefix) && e.val != nil && g.grp != nil && g.serving.Load():
			var rev Revision
			if json.Unmarshal(e.val, &rev) == nil {
				g.background(func() { _ = g.pin(rev.Module) })
			}
		case strings.HasPrefix(e.key, taskPrefix) && e.val != nil:
			var t Task
			if json.Unmarshal(e.val, &t) != nil || !t.shared() {
				continue
			}
			if t.State.Terminal() {
				g.taskEnded(t)
				continue
			}
			if t.State == TaskScheduled && g.serving.Load() && g.leads(t.Account, t.Function) {
				g.background(func() { g.runKept(t) })
			}
		}
	}
}

// restored follows a snapshot restored: every cache starts again, and the
// queues are read again.
func (g *Gateway) restored() {
	g.functions.reset()
	g.revisions.reset()
	g.keys.reset()
	queues := map[string]Queue{}
	_ = each(g.db, queuePrefix, func(key string, q Queue) error {
		queues[key] = q
		return nil
	})
	g.queuesMu.Lock()
	g.queues = queues
	for key, m := range g.moved {
		m.cancel()
		delete(g.moved, key)
	}
	close(g.queuesCh)
	g.queuesCh = make(chan struct{})
	g.queuesMu.Unlock()
	if g.serving.Load() {
		g.background(func() { g.resumeKept() })
	}
}

// forgetEndpointCalls deletes this gateway's counts of a deleted
// endpoint's calls.
func (g *Gateway) forgetEndpointCalls(ep string) {
	mu := g.stripe("ep:" + ep)
	mu.Lock()
	defer mu.Unlock()
	stale, err := keys(g.db, epCallsOf(ep))
	if err == nil {
		err = g.db.Write(nil, stale)
	}
	if err != nil {
		g.log.Warn("deleting the counts of a deleted endpoint", "endpoint", ep, "err", err)
	}
}

// background runs fn in a goroutine Close waits for, unless closed.
func (g *Gateway) background(fn func()) {
	if !g.goBackground() {
		return
	}
	go func() {
		defer g.wg.Done()
		fn()
	}()
}

// pin fetches a blob the group's records name (a revision's module, a
// kept task's output) from the members, so that this member holds it:
// to start instances of the revision when it leads its queue, and when
// the member that took it is gone. Alone, or when it is held, nothing.
func (g *Gateway) pin(cid string) error {
	if cid == "" || g.grp == nil {
		return nil
	}
	if has, err := g.runner.HasBlob(g.ctx, cid); err != nil || has {
		return err
	}
	var from []string
	for _, m := range g.grp.Members() {
		if m.ID != g.self {
			from = append(from, m.ID)
		}
	}
	ctx, cancel := context.WithTimeout(g.ctx, pinTimeout)
	defer cancel()
	err := g.fw.Fetch(ctx, cid, from)
	if err != nil && g.ctx.Err() == nil {
		g.log.Warn("fetching a blob of the group's", "cid", cid, "err", err)
	}
	return err
}

// pinTimeout bounds the fetch of one blob the group's records name.
const pinTimeout = time.Minute

// taskEnded wakes those who wait for a kept task, and stops its call
// here if it runs here (it was stopped on another member).
func (g *Gateway) taskEnded(t Task) {
	g.waitersMu.Lock()
	ch, ok := g.waiters[t.ID]
	delete(g.waiters, t.ID)
	g.waitersMu.Unlock()
	if ok {
		close(ch)
	}
	if live, ok := g.calls.Load(t.ID); ok {
		live.(*liveCall).cancel(errStopped)
	}
	if t.Response != "" && g.grp != nil && g.serving.Load() {
		g.background(func() { _ = g.pin(t.Response) })
	}
}

// awaitTask waits until a kept task has ended (or ctx ends).
func (g *Gateway) awaitTask(ctx context.Context, acct, id string) error {
	g.waitersMu.Lock()
	ch, ok := g.waiters[id]
	if !ok {
		ch = make(chan struct{})
		g.waiters[id] = ch
	}
	g.waitersMu.Unlock()
	defer func() {
		g.waitersMu.Lock()
		if g.waiters[id] == ch {
			select {
			case <-ch:
			default:
				delete(g.waiters, id)
			}
		}
		g.waitersMu.Unlock()
	}()
	if t, err := g.task(acct, id); err != nil || t.State.Terminal() {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// runKept runs a task the group keeps, on this member, which leads its
// function's queue; one already running here is left.
func (g *Gateway) runKept(t Task) {
	if _, running := g.kept.LoadOrStore(t.ID, true); running {
		return
	}
	defer g.kept.Delete(t.ID)
	t, err := g.task(t.Account, t.ID)
	if err != nil || t.State.Terminal() {
		return
	}
	var in callInput
	found, err := g.db.Lookup(inputKey(t.Account, t.ID), &in)
	if err != nil || !found {
		g.end(t, verdict{State: TaskFailed, Err: api.ErrUnavailable, Reason: "the gateway restarted during the call (its input was not kept)"})
		return
	}
	rev, err := g.revision(t.Account, t.Function, t.Revision)
	if err != nil {
		g.end(t, verdict{State: TaskFailed, Err: err, Reason: err.Error()})
		return
	}
	g.execute(g.ctx, rev, t, in)
}

// takeOver runs the unfinished kept tasks of a function whose queue this
// member came to lead, and starts its instances if it keeps some warm.
func (g *Gateway) takeOver(acct, fn string) {
	if f, err := g.function(acct, fn); err == nil && f.Scaling.MinInstances > 0 {
		g.pools.rescale(acct, f)
	}
	var open []Task
	_ = each(g.db, tasksOf(acct), func(_ string, t Task) error {
		if t.Function == fn && t.shared() && !t.State.Terminal() {
			open = append(open, t)
		}
		return g.ctx.Err()
	})
	for _, t := range open {
		g.background(func() { g.runKept(t) })
	}
	if len(open) > 0 {
		g.log.Info("took over the tasks of a queue", "function", fn, "tasks", len(open))
	}
}

// resumeKept runs every unfinished kept task whose queue this member
// leads.
func (g *Gateway) resumeKept() {
	var open []Task
	_ = each(g.db, taskPrefix, func(_ string, t Task) error {
		if t.shared() && !t.State.Terminal() && g.leads(t.Account, t.Function) {
			open = append(open, t)
		}
		return g.ctx.Err()
	})
	for _, t := range open {
		g.background(func() { g.runKept(t) })
	}
	if len(open) > 0 {
		g.log.Info("resumed unfinished tasks", "tasks", len(open))
	}
}

// rebalance runs on every member and acts on the raft leader: it moves
// the queues of members lost (not alive, or no longer members) to their
// first live follower, and tops their followers up.
func (g *Gateway) rebalance() {
	tick := time.NewTicker(rebalanceEvery)
	defer tick.Stop()
	watch := g.grp.Watch()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-tick.C:
		case <-watch:
		}
		if !g.grp.IsLeader() {
			continue
		}
		live := map[string]bool{}
		for _, m := range g.grp.Members() {
			if m.Alive && m.Voter {
				live[m.ID] = true
			}
		}
		g.queuesMu.Lock()
		queues := maps.Clone(g.queues)
		g.queuesMu.Unlock()
		for key, q := range queues {
			if live[q.Leader] && len(q.Followers) >= min(followers, len(live)-1) && allLive(q.Followers, live) {
				continue
			}
			acct, fn, _ := strings.Cut(strings.TrimPrefix(key, queuePrefix), "/")
			if err := g.moveQueue(acct, fn, live); err != nil && g.ctx.Err() == nil {
				g.log.Warn("moving a queue", "function", fn, "err", err)
			}
		}
	}
}

func allLive(ids []string, live map[string]bool) bool {
	for _, id := range ids {
		if !live[id] {
			return false
		}
	}
	return true
}

// moveQueue gives a queue whose leader is lost to its first live follower
// (or the least loaded live member), and tops its followers up.
func (g *Gateway) moveQueue(acct, fn string, live map[string]bool) error {
	ctx, cancel := context.WithTimeout(g.ctx, proposeTimeout)
	defer cancel()
	return g.update(ctx, func(t *tx) error {
		var q Queue
		if found, err := t.lookup(queueKey(acct, fn), &q); err != nil || !found {
			return err
		}
		next := q
		if !live[q.Leader] {
			next.Leader, next.Epoch = "", q.Epoch+1
			for _, f := range q.Followers {
				if live[f] {
					next.Leader = f
					break
				}
			}
		}
		if next.Leader == "" {
			order := g.byLoad(nil)
			if len(order) == 0 {
				return nil
			}
			next.Leader = order[0]
		}
		keep := map[string]bool{next.Leader: true}
		next.Followers = nil
		for _, f := range q.Followers {
			if live[f] && !keep[f] && len(next.Followers) < followers {
				next.Followers, keep[f] = append(next.Followers, f), true
			}
		}
		for _, m := range g.byLoad(keep) {
			if len(next.Followers) < followers {
				next.Followers = append(next.Followers, m)
			}
		}
		if next.Leader == q.Leader && slices.Equal(next.Followers, q.Followers) {
			return nil
		}
		t.set(queueKey(acct, fn), next)
		if next.Leader != q.Leader {
			g.log.Info("moved a queue", "function", fn, "from", q.Leader, "to", next.Leader, "epoch", next.Epoch)
		}
		return nil
	})
}

// Group describes the gateway's group; ErrNotFound when it is in none.
func (g *Gateway) Group(ctx context.Context) (GroupStatus, error) {
	if g.grp == nil {
		return GroupStatus{}, fmt.Errorf("%w: this gateway is in no group (start it with --gateway-group)", api.ErrNotFound)
	}
	s := GroupStatus{Name: g.groupName, Self: g.self, Leader: g.grp.Leader(), Healthy: g.grp.Healthy(), Members: []GroupMember{}, Queues: []QueueStatus{}}
	led := map[string]int{}
	g.queuesMu.Lock()
	for key, q := range g.queues {
		acct, fn, _ := strings.Cut(strings.TrimPrefix(key, queuePrefix), "/")
		s.Queues = append(s.Queues, QueueStatus{Account: acct, Function: fn, Queue: q})
		led[q.Leader]++
	}
	g.queuesMu.Unlock()
	for _, m := range g.grp.Members() {
		s.Members = append(s.Members, GroupMember{ID: m.ID, Voter: m.Voter, Leader: m.Leader, Alive: m.Alive, Queues: led[m.ID]})
	}
	slices.SortFunc(s.Queues, func(a, b QueueStatus) int {
		return cmp.Or(strings.Compare(a.Account, b.Account), strings.Compare(a.Function, b.Function))
	})
	return s, nil
}

// AddMember adds a gateway to the group: addr is its multiaddr (with
// /p2p/ID), or its peer ID alone when the network can find it. The new
// member must run with the group's name and --gateway-join.
func (g *Gateway) AddMember(ctx context.Context, addr string) (string, error) {
	if g.grp == nil {
		return "", fmt.Errorf("%w: this gateway is in no group", api.ErrNotFound)
	}
	id, err := g.fw.AddPeerAddr(addr)
	if err != nil {
		return "", fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	if err := g.grp.Add(ctx, id); err != nil {
		return "", groupError(err)
	}
	return id, nil
}

// RemoveMember removes a gateway from the group; its queues move to their
// followers.
func (g *Gateway) RemoveMember(ctx context.Context, id string) error {
	if g.grp == nil {
		return fmt.Errorf("%w: this gateway is in no group", api.ErrNotFound)
	}
	return groupError(g.grp.Remove(ctx, id))
}

// groupError maps the group's errors to the API's.
func groupError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, group.ErrNotMember):
		return fmt.Errorf("%w: %w", api.ErrNotFound, err)
	case errors.Is(err, group.ErrNoQuorum):
		return &api.RetryError{Err: fmt.Errorf("%w: the gateway group has no quorum: %w", api.ErrUnavailable, err), After: noQuorumRetry}
	}
	return err
}

// forwardRef names a revision's queue on the forward protocol.
func forwardRef(acct, fn string, rev int) types.AllocationID {
	return types.AllocationID(acct + "/" + fn + "/" + strconv.Itoa(rev))
}

// forward sends a call to the member that leads its queue, and reads its
// answer: the reply of the instance that ran it, or the leader's error.
func (g *Gateway) forward(ctx context.Context, leader string, rev Revision, t Task, in callInput) (*types.CallReply, *instance, error) {
	req := types.CallRequest{Allocation: forwardRef(t.Account, t.Function, rev.Number), Env: in.Env, Stdin: in.Stdin}
	if deadline, ok := ctx.Deadline(); ok {
		req.Timeout = time.Until(deadline)
	}
	fctx, cancel := context.WithCancel(ctx)
	if !g.grp.Healthy() {
		// Cut off, this member may not reach the leader, and would not
		// learn that the queue moved: it tries briefly.
		fctx, cancel = context.WithTimeout(ctx, cutOffForward)
	}
	defer cancel()
	defer context.AfterFunc(g.leaderMoved(t.Account, t.Function, leader), cancel)()
	reply, err := g.fw.Forward(fctx, leader, &req)
	switch {
	case err != nil && ctx.Err() == nil:
		return nil, nil, fmt.Errorf("%w: %w", errLeaderLost, err)
	case err != nil:
		return nil, nil, err
	case reply.Status == types.CallUnknown:
		return nil, nil, errNotLeader
	case reply.Code != 0:
		return nil, nil, codeError(reply)
	}
	return reply, &instance{peer: reply.Node, job: reply.Job}, nil
}

// errNotLeader is a forward's answer from a member that does not (or no
// longer) lead the queue.
var errNotLeader = errors.New("gateway: not the leader of the queue")

// errLeaderLost is a forward that got no answer: the leader was lost
// (or the stream to it broke) with the call in flight.
var errLeaderLost = errors.New("gateway: the leader of the queue was lost")

// statusSentinels maps the statuses a leader forwards back to the API's
// sentinels, and back.
var statusSentinels = map[uint16]error{
	429: api.ErrTooManyRequests, 502: api.ErrBadGateway, 503: api.ErrUnavailable, 504: api.ErrGatewayTimeout,
}

// codeError is the error a leader answered a forward with.
func codeError(r *types.CallReply) error {
	sentinel, ok := statusSentinels[r.Code]
	if !ok {
		sentinel = api.ErrBadGateway
	}
	err := fmt.Errorf("%w: %s", sentinel, r.Error)
	if r.RetryAfter > 0 {
		return &api.RetryError{Err: err, After: r.RetryAfter}
	}
	return err
}

// ServeForward serves a call another member forwarded: it runs it on this
// member's pool of the revision, if this member leads its queue (else
// CallUnknown: the sender catches up, and sends it again to whoever leads
// the queue then, this member included: awaitLeader).
func (g *Gateway) ServeForward(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
	unknown := &types.CallReply{Status: types.CallUnknown, Error: "no such queue here"}
	parts := strings.Split(string(req.Allocation), "/")
	if g.grp == nil || len(parts) != 3 || !g.isMember(from) {
		return unknown
	}
	acct, fn := parts[0], parts[1]
	n, err := strconv.Atoi(parts[2])
	if err != nil {
		return unknown
	}
	if !g.leads(acct, fn) {
		// The sender read a record that names this member: it may be
		// one this member has not applied yet.
		if g.fresh(ctx) != nil || !g.leads(acct, fn) {
			return unknown
		}
	}
	if err := g.enter(acct); err != nil {
		return errorReply(err)
	}
	defer g.leave(acct)
	rev, err := g.revision(acct, fn, n)
	if err != nil {
		return errorReply(err)
	}
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	reply, inst, err := g.dispatchHere(ctx, acct, rev, callInput{Env: req.Env, Stdin: req.Stdin}, &liveCall{cancel: func(error) {}})
	if err != nil {
		return errorReply(err)
	}
	reply.Node, reply.Job = inst.peer, inst.job
	return reply
}

// isMember reports whether id is a member of the group.
func (g *Gateway) isMember(id string) bool {
	for _, m := range g.grp.Members() {
		if m.ID == id {
			return true
		}
	}
	return false
}

// errorReply carries a leader's error back to the member that forwarded.
func errorReply(err error) *types.CallReply {
	r := &types.CallReply{Status: types.CallNodeError, Error: err.Error(), Code: 502}
	for code, sentinel := range statusSentinels {
		if errors.Is(err, sentinel) {
			r.Code = code
		}
	}
	var retry *api.RetryError
	if errors.As(err, &retry) && (r.Code == 429 || r.Code == 503) {
		r.RetryAfter = retry.After
	}
	return r
}

// syncTimeout bounds the wait for a member to catch up before a read.
const syncTimeout = time.Second

// syncer runs group.Sync for the reads that missed on a member: those at
// once share one, but only one that began after they did (a Sync begun
// earlier may not see a write acknowledged just before a read).
type syncer struct {
	mu      sync.Mutex
	started uint64
	cur     *syncRound
}

type syncRound struct {
	id   uint64
	done chan struct{}
	err  error
}

// fresh makes a member's next reads see every write the group
// acknowledged before it was called: a record missing here may be one
// just written through another member. Alone, there is nothing to wait
// for.
func (g *Gateway) fresh(ctx context.Context) error {
	if g.grp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	s := &g.syncs
	s.mu.Lock()
	want := s.started + 1
	for {
		if r := s.cur; r != nil {
			s.mu.Unlock()
			select {
			case <-r.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if r.id >= want {
				return r.err
			}
			s.mu.Lock()
			if s.cur == r {
				s.cur = nil
			}
			continue
		}
		s.started++
		r := &syncRound{id: s.started, done: make(chan struct{})}
		s.cur = r
		s.mu.Unlock()
		r.err = g.grp.Sync(ctx)
		s.mu.Lock()
		if s.cur == r {
			s.cur = nil
		}
		s.mu.Unlock()
		close(r.done)
		return r.err
	}
}

// findFresh is find, read again after the member caught up (fresh) when
// the record is missing here.
func findFresh[T any](ctx context.Context, g *Gateway, valid bool, key, kind, name string) (T, error) {
	v, err := find[T](g.db, valid, key, kind, name)
	if errors.Is(err, api.ErrNotFound) && valid && g.grp != nil && g.fresh(ctx) == nil {
		v, err = find[T](g.db, valid, key, kind, name)
	}
	return v, err
}

// revCache holds revisions as read: a revision never changes, and goes
// only with its function (whose name a later deploy may take again: a
// reader that read before a function was deleted does not store what it
// read, as in fnCache).
type revCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[poolKey]Revision
}

func (c *revCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *revCache) get(k poolKey) (Revision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[k]
	return r, ok
}

func (c *revCache) put(k poolKey, r Revision, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= maxCachedFunctions {
		c.m = map[poolKey]Revision{}
	}
	c.m[k] = r
}

func (c *revCache) forget(acct, fn string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k := range c.m {
		if k.account == acct && k.function == fn {
			delete(c.m, k)
		}
	}
}

func (c *revCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m = nil
}
