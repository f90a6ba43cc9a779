package group

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// retryWait bounds a wait for news of a leader before trying again.
const retryWait = 20 * time.Millisecond

// propose runs o at the leader, this member or another, until it is done,
// ctx ends, or the outcome is ambiguous. It retries only what was surely
// not appended: no byte sent, or the leader's raft said it was not leader
// before appending.
func (g *Group) propose(ctx context.Context, o op, payload []byte) (outcome, error) {
	for attempt := 0; ; attempt++ {
		if g.ctx.Err() != nil {
			return outcome{}, ErrClosed
		}
		_, moved := g.currentView()
		out, sent, err := g.tryPropose(ctx, o, payload)
		switch {
		case err == nil:
			if err := out.err(); !errors.Is(err, errNotAppended) {
				return out, err
			}
		case sent:
			return outcome{}, fmt.Errorf("%w: %s may or may not commit: %w", ErrNoQuorum, o, err)
		}
		select { // not appended: wait for news of a leader, briefly
		case <-moved:
		case <-time.After(retryWait):
		case <-ctx.Done():
			return outcome{}, fmt.Errorf("%w: no leader took %s within the deadline (%d tries): %w", ErrNoQuorum, o, attempt+1, ctx.Err())
		case <-g.ctx.Done():
			return outcome{}, ErrClosed
		}
	}
}

// tryPropose runs o once at the leader this member knows. An error with
// sent false means nothing reached a leader.
func (g *Group) tryPropose(ctx context.Context, o op, payload []byte) (outcome, bool, error) {
	leader := g.Leader()
	switch leader {
	case "":
		return outcome{code: codeNotLeader}, false, nil
	case g.cfg.Self:
		return g.execute(ctx, o, payload), false, nil
	}
	c, err := g.client(ctx, leader)
	if err != nil {
		return outcome{}, false, err
	}
	return c.call(ctx, o, payload)
}

// client returns the connection to leader, dialling it if there is none:
// concurrent callers share one dial and one connection.
func (g *Group) client(ctx context.Context, leader string) (*rpcClient, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, ErrClosed
	}
	s := g.clients[leader]
	if s != nil && s.c != nil && s.c.isBroken() {
		s = nil
	}
	if s == nil {
		s = &clientSlot{ready: make(chan struct{})}
		g.clients[leader] = s
		g.wg.Add(1)
		go g.dial(leader, s)
	}
	g.mu.Unlock()
	select {
	case <-s.ready:
		return s.c, s.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dial connects to leader for s, bounded by ioTimeout and Close.
func (g *Group) dial(leader string, s *clientSlot) {
	defer g.wg.Done()
	ctx, cancel := context.WithTimeout(g.ctx, ioTimeout)
	defer cancel()
	conn, err := g.cfg.Transport.Dial(ctx, leader, channelRPC)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil && g.closed {
		conn.Close()
		err = ErrClosed
	}
	if err != nil {
		s.err = fmt.Errorf("group: dialling the leader %s: %w", leader, err)
		delete(g.clients, leader)
		close(s.ready)
		return
	}
	s.c = newRPCClient(conn)
	close(s.ready)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		s.c.readLoop()
	}()
}

func (c *rpcClient) isBroken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken != nil
}

// execute runs o on this member's raft, which should lead.
func (g *Group) execute(ctx context.Context, o op, payload []byte) outcome {
	timeout := max(time.Until(deadline(ctx)), time.Millisecond)
	var f raft.Future
	switch o {
	case opApply:
		af := g.raft.Apply(payload, timeout)
		if err := g.await(ctx, af); err != nil {
			return failed(err)
		}
		data, _ := af.Response().([]byte)
		return outcome{code: codeOK, index: af.Index(), data: data}
	case opAdd:
		id := raft.ServerID(payload)
		f = g.raft.AddVoter(id, raft.ServerAddress(payload), 0, timeout)
	case opRemove:
		servers, err := g.servers()
		if err != nil {
			return failed(err)
		}
		if !containsID(servers, string(payload)) {
			return outcome{code: codeNotMember, data: fmt.Appendf(nil, "%q", payload)}
		}
		f = g.raft.RemoveServer(raft.ServerID(payload), 0, timeout)
	case opRead:
		applied, _ := g.fsm.state()
		return outcome{code: codeOK, index: applied}
	default:
		return outcome{code: codeRefused, data: fmt.Appendf(nil, "unknown op %d", o)}
	}
	if err := g.await(ctx, f); err != nil {
		return failed(err)
	}
	return outcome{code: codeOK}
}

// await waits for f, or for ctx. f is waited for in a goroutine of its
// own: raft resolves every future (at the latest when it shuts down).
func (g *Group) await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	if !g.spawn(func() { done <- f.Error() }) {
		return ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("appended, waiting for commit: %w", ctx.Err())
	}
}

// failed turns raft's error into an outcome: ErrNotLeader and
// ErrEnqueueTimeout come before the entry is appended; anything else may
// come after.
func failed(err error) outcome {
	c := codeAmbiguous
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrEnqueueTimeout) {
		c = codeNotLeader
	}
	return outcome{code: c, data: []byte(err.Error())}
}

func containsID(servers []raft.Server, id string) bool {
	for _, s := range servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}
