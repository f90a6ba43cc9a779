package group

import (
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Member is one member of the group, as this member sees it.
type Member struct {
	ID     string
	Voter  bool
	Leader bool
	// Alive, on the leader: false once it had no contact with the member
	// for DownAfter (its heartbeats failed), true again when one succeeds.
	// A member not heard from is alive until it fails. On a follower,
	// which has no such knowledge, every member is alive.
	Alive bool
}

// view is what the monitor last saw: the leader, the configuration and,
// on the leader, who is down.
type view struct {
	leader  string
	servers []raft.Server
	down    map[string]bool
}

func (v view) equal(w view) bool {
	return v.leader == w.leader && slices.Equal(v.servers, w.servers) && maps.Equal(v.down, w.down)
}

// currentView returns the view and a channel closed when it changes.
func (g *Group) currentView() (view, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.view, g.moved
}

// Members lists the members of raft's latest configuration.
func (g *Group) Members() []Member {
	v, _ := g.currentView()
	servers, err := g.servers()
	if err != nil {
		servers = v.servers
	}
	leader := g.Leader()
	out := make([]Member, 0, len(servers))
	for _, s := range servers {
		id := string(s.ID)
		out = append(out, Member{ID: id, Voter: s.Suffrage == raft.Voter, Leader: id == leader, Alive: !v.down[id]})
	}
	return out
}

// Watch returns a channel that receives a value (coalesced: it holds one)
// whenever the leader, the configuration or a member's Alive changes.
// It is closed by Close.
func (g *Group) Watch() <-chan struct{} {
	w := make(chan struct{}, 1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		close(w)
		return w
	}
	g.watchers = append(g.watchers, w)
	return w
}

// lookAgain asks the monitor to refresh its view now.
func (g *Group) lookAgain() {
	select {
	case g.poke <- struct{}{}:
	default:
	}
}

// monitor owns the heartbeat failures raft reports and turns them, with
// the leader and the configuration, into the view; it refreshes on every
// observation and every quarter of DownAfter.
func (g *Group) monitor() {
	defer g.wg.Done()
	tick := time.NewTicker(g.cfg.DownAfter / 4)
	defer tick.Stop()
	failing := map[string]time.Time{} // on the leader: member -> last contact before its heartbeats failed
	var since time.Time               // when the leader last changed
	for {
		select {
		case o := <-g.obsCh:
			if _, ok := o.Data.(raft.LeaderObservation); ok {
				since = time.Now()
			}
			observe(failing, o.Data, since)
		case <-g.poke:
		case <-tick.C:
		case <-g.ctx.Done():
			return
		}
		g.refresh(failing)
	}
}

// observe records one of raft's observations in failing. A member a new
// leader never reached counts as out of contact since the leader changed
// (leaderSince): a member killed with the old leader is found down about
// DownAfter after the election, not DownAfter after the new leader's
// first heartbeat to it timed out.
func observe(failing map[string]time.Time, o any, leaderSince time.Time) {
	switch o := o.(type) {
	case raft.LeaderObservation:
		clear(failing) // a new leader (or none) sees its followers anew
	case raft.PeerObservation:
		if o.Removed {
			delete(failing, string(o.Peer.ID))
		}
	case raft.FailedHeartbeatObservation:
		if _, ok := failing[string(o.PeerID)]; !ok {
			since := o.LastContact
			if since.IsZero() {
				since = leaderSince
			}
			if since.IsZero() {
				since = time.Now()
			}
			failing[string(o.PeerID)] = since
		}
	case raft.ResumedHeartbeatObservation:
		delete(failing, string(o.PeerID))
	}
}

// refresh builds the view from raft and failing, and publishes it if it
// changed: the waiters wake, the watchers get a value, and the listeners
// let in the configuration's members.
func (g *Group) refresh(failing map[string]time.Time) {
	servers, err := g.servers()
	if err != nil {
		return // shut down, or shutting down
	}
	v := view{leader: g.Leader(), servers: servers, down: map[string]bool{}}
	if g.raft.State() == raft.Leader {
		for id, since := range failing {
			if time.Since(since) >= g.cfg.DownAfter {
				v.down[id] = true
			}
		}
	}
	ids := map[string]bool{}
	for _, s := range servers {
		ids[string(s.ID)] = true
	}
	g.members.set(ids)
	g.mu.Lock()
	defer g.mu.Unlock()
	if v.equal(g.view) {
		return
	}
	g.view = v
	close(g.moved)
	g.moved = make(chan struct{})
	for _, w := range g.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}
