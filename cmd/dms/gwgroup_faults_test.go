package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/types"
)

// loadPause paces each client of the failover's load: a few hundred calls
// a second in all, a resolution of 20 ms for the recovery, and not so many
// async tasks that the queue behind them fills.
const loadPause = 20 * time.Millisecond

// callKind is how a client of the failover's load calls echo.
type callKind int

const (
	syncCall  callKind = iota // waits for the answer
	keyedCall                 // waits, with an Idempotency-Key, and retries the key elsewhere until it is answered
	asyncCall                 // ?async=1: the task at once
)

func (k callKind) String() string { return [...]string{"sync", "keyed", "async"}[k] }

// loadCall is one call of the load: an attempt, for a keyed call.
type loadCall struct {
	answer
	kind callKind
	key  string // keyed calls
}

// served: the call got what it asked for (the echo, or the task of an
// async call).
func (c loadCall) served() bool {
	if c.kind == asyncCall {
		return c.err == nil && c.status == http.StatusAccepted
	}
	return c.ok() && strings.Contains(c.body, "body: hi")
}

// callLoad is clients calling echo through some gateways until stopped,
// each at most one call every loadPause: client w makes calls of kind w%3,
// turning round the gateways.
type callLoad struct {
	mu     sync.Mutex
	calls  []loadCall
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (g *gwGroup) startLoad(to []int, clients int) *callLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &callLoad{cancel: cancel}
	for w := range clients {
		l.wg.Go(func() {
			for seq := 0; ctx.Err() == nil; seq++ {
				next := time.Now().Add(loadPause)
				g.loadCall(ctx, l, callKind(w%3), fmt.Sprintf("f-%d-%d", w, seq), to, w+seq)
				time.Sleep(time.Until(next))
			}
		})
	}
	return l
}

// loadCall makes one call of kind through to[at%len(to)]; a keyed call
// that is not served is retried with its key on the next gateway, up to 5
// attempts.
func (g *gwGroup) loadCall(ctx context.Context, l *callLoad, kind callKind, key string, to []int, at int) {
	path, hdr := "/v1/functions/echo/invoke", map[string]string{}
	switch kind {
	case asyncCall:
		path += "?async=1"
	case keyedCall:
		hdr[gateway.HeaderIdempotencyKey] = key
	}
	for attempt := range 5 {
		c := loadCall{answer: g.call(ctx, to[(at+attempt)%len(to)], path, hdr), kind: kind}
		if kind == keyedCall {
			c.key = key
		}
		if ctx.Err() != nil && c.err != nil {
			return // cut by the end of the load, not by the group
		}
		l.mu.Lock()
		l.calls = append(l.calls, c)
		l.mu.Unlock()
		if c.served() || kind != keyedCall {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the load and waits for its clients.
func (l *callLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *callLoad) snapshot() []loadCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// recovery reads the load since a fault at from: the calls that failed
// (not served, ended after from), when the last of them ended, and how
// long after from the first call sent after that (and after from) was
// served; ok is false while there is no such call.
func recovery(calls []loadCall, from time.Time) (failed []loadCall, lastFail time.Time, took time.Duration, ok bool) {
	lastFail = from
	for _, c := range calls {
		if !c.served() && c.done.After(from) {
			failed = append(failed, c)
			if c.done.After(lastFail) {
				lastFail = c.done
			}
		}
	}
	var first time.Time
	for _, c := range calls {
		if c.served() && !c.sent.Before(lastFail) && (first.IsZero() || c.done.Before(first)) {
			first = c.done
		}
	}
	if first.IsZero() {
		return failed, lastFail, 0, false
	}
	return failed, lastFail, first.Sub(from), true
}

// The failover: calls flow to the two gateways that do not lead echo's
// queue, several clients at once, plain, with Idempotency-Keys and async;
// the queue's leader is killed with SIGKILL. Another gateway leads the
// queue, the calls are served again, every async task taken completes, no
// key gets two tasks; the killed gateway, restarted, catches up with what
// the group wrote while it was down.
func (g *gwGroup) failover(t *testing.T) {
	g.waitHealthy(t)
	var leaderID string
	eventually(t, 30*time.Second, "a leader of echo's queue", func() bool {
		leaderID = g.queueLeader(t, 0, "echo")
		return leaderID != ""
	})
	leader := nodeByPeer(t, g.nodes, leaderID)
	survivors := others(leader)
	load := g.startLoad(survivors, 6)
	defer load.stop()
	time.Sleep(2 * time.Second) // a steady load before the fault: the baseline
	if base := load.snapshot(); !slices.ContainsFunc(base, loadCall.served) {
		t.Fatalf("no call served through gateways %v before the fault: %v", survivors, answers(base[:min(5, len(base))]))
	}
	groupLeader := g.raftLeader(t, survivors[0]) == leader // then an election comes first
	killed := time.Now()
	g.nodes[leader].kill9(t)

	var newLeader string
	eventually(t, 10*time.Second, "a new leader of echo's queue", func() bool {
		newLeader = g.queueLeader(t, survivors[0], "echo")
		return newLeader != "" && newLeader != leaderID
	})
	elected := time.Since(killed)
	var failed []loadCall
	var took time.Duration
	eventually(t, 30*time.Second, "calls served again, for 2 s", func() bool {
		var lastFail time.Time
		var ok bool
		failed, lastFail, took, ok = recovery(load.snapshot(), killed)
		return ok && time.Since(lastFail) > 2*time.Second
	})
	load.stop()
	calls := load.snapshot()
	after := 0
	for _, c := range calls {
		if c.done.After(killed) {
			after++
		}
	}
	t.Logf("queue leader gateway %d (the group's leader too: %v) killed: gateway %d leads echo's queue %s later (as seen by polling status); calls served again %s after the kill; %d of %d calls after the kill failed %v",
		leader, groupLeader, nodeByPeer(t, g.nodes, newLeader), elected.Round(time.Millisecond), took.Round(time.Millisecond), len(failed), after, failKinds(failed))
	logFirst(t, answers(failed), func(answer) bool { return true })
	if took > 10*time.Second {
		t.Errorf("calls were served again only %s after the kill; target 2 s, bound 10 s", took)
	}
	g.checkAsyncCompleted(t, calls, survivors)
	checkOneTaskPerKey(t, keyedAttempts(calls))
	g.catchUp(t, leader, survivors[0])
}

func failKinds(cs []loadCall) map[string]int {
	n := map[string]int{}
	for _, c := range cs {
		n[c.kind.String()]++
	}
	return n
}

func answers(cs []loadCall) []answer {
	out := make([]answer, len(cs))
	for i, c := range cs {
		out[i] = c.answer
	}
	return out
}

// keyedAttempts groups the keyed calls' attempts by key.
func keyedAttempts(cs []loadCall) [][]answer {
	by := map[string][]answer{}
	for _, c := range cs {
		if c.kind == keyedCall {
			by[c.key] = append(by[c.key], c.answer)
		}
	}
	out := make([][]answer, 0, len(by))
	for _, as := range by {
		out = append(out, as)
	}
	return out
}

// checkAsyncCompleted: every task an async call was given completes,
// read through the surviving gateways.
func (g *gwGroup) checkAsyncCompleted(t *testing.T, calls []loadCall, through []int) {
	t.Helper()
	var ids []string
	for _, c := range calls {
		if c.kind != asyncCall || !c.served() {
			continue
		}
		var task gateway.Task
		if err := json.Unmarshal([]byte(c.body), &task); err != nil || task.ID == "" {
			t.Fatalf("an async call's 202 names no task: %q", c.body)
		}
		ids = append(ids, task.ID)
	}
	began := time.Now()
	var mu sync.Mutex
	bad := map[string]gateway.Task{}
	concurrently(len(ids), 8, func(k int) answer {
		id := ids[k]
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			task, err := g.client(through[k%len(through)]).GetTask(ctx, id)
			cancel()
			ended := err == nil && task.State != gateway.TaskScheduled && task.State != gateway.TaskRunning
			if ended && task.State == gateway.TaskCompleted && task.Status == http.StatusOK {
				return answer{}
			}
			if ended || time.Now().After(deadline) {
				mu.Lock()
				bad[id] = task
				mu.Unlock()
				return answer{}
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	for id, task := range bad {
		t.Errorf("async task %s: %q %d %s (not completed with 200 within 60 s)", id, task.State, task.Status, task.Reason)
	}
	t.Logf("%d async tasks taken, all ended %s after the load", len(ids), time.Since(began).Round(time.Millisecond))
}

// catchUp makes an account through gateway via while gateway down is
// down, restarts down, and waits until it knows the account and serves
// calls.
func (g *gwGroup) catchUp(t *testing.T, down, via int) {
	t.Helper()
	cliOK(t, g.nodes[via].bin, "account", "create", "late", "--home", g.nodes[via].home)
	restarted := time.Now()
	n := g.nodes[down]
	n.restart(t)
	eventually(t, 60*time.Second, "the restarted gateway to know the account made while it was down", func() bool {
		code, _, _ := runBin(t, n.bin, "account", "show", "late", "--home", n.home)
		return code == 0
	})
	t.Logf("gateway %d restarted: knows the account made while it was down %s later", down, time.Since(restarted).Round(time.Millisecond))
	eventually(t, 60*time.Second, "a call through the restarted gateway", func() bool {
		return g.call(context.Background(), down, "/v1/functions/echo/invoke", nil).ok()
	})
	g.waitHealthy(t)
}

// The partition: the group's leader is cut off. On it, a deploy and a call
// through an endpoint with a quota answer 503 saying the group has no
// quorum; the two others go on deploying and calling. Healed, the cut
// gateway has what they wrote, and none of what it refused.
func (g *gwGroup) partition(t *testing.T) {
	g.waitHealthy(t)
	g.endpoint(t, 0, "q3", 1000)
	cut := g.raftLeader(t, 0)
	majority := others(cut)
	g.lab.cut(cut)
	healed := false
	defer func() {
		if !healed {
			g.lab.heal(cut)
		}
	}()
	cutAt := time.Now()

	var refused []string // functions the cut gateway was asked to deploy
	deploy := func(i int, name string) answer {
		body, err := json.Marshal(gateway.Deploy{Name: name, Module: g.module, Resources: types.Resources{CPU: 100, Memory: 64 << 20}})
		if err != nil {
			return answer{gw: i, err: err}
		}
		return g.request(context.Background(), i, http.MethodPost, "/v1/functions", string(body), nil)
	}
	// The majority's side, meanwhile: how long until it writes again (it
	// elects a leader first when the cut gateway led the group).
	type majorityDeploy struct {
		took  time.Duration
		last  answer
		first answer // the first try's
		tries int
	}
	majDone := make(chan majorityDeploy, 1)
	go func() {
		var m majorityDeploy
		for time.Since(cutAt) < 30*time.Second {
			m.tries++
			if m.last = deploy(majority[0], "majfn"); m.tries == 1 {
				m.first = m.last
			}
			if m.last.ok() {
				m.took = time.Since(cutAt)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		majDone <- m
	}()
	g.waitNoQuorum(t, cut, cutAt, "a deploy", func(k int) answer {
		name := fmt.Sprintf("cutfn-%d", k)
		refused = append(refused, name)
		return deploy(cut, name)
	})
	g.waitNoQuorum(t, cut, cutAt, "a call through an endpoint with a quota", func(int) answer {
		return g.call(context.Background(), cut, "/e/q3/", nil)
	})
	m := <-majDone
	if !m.last.ok() {
		t.Fatalf("the majority could not deploy within 30 s of the cut: %s", m.last)
	}
	t.Logf("cut off: the majority deployed %s after the cut (%d tries, the last took %s; the first answered %s after %s)", m.took.Round(time.Millisecond),
		m.tries, m.last.done.Sub(m.last.sent).Round(time.Millisecond), m.first, m.first.done.Sub(m.first.sent).Round(time.Millisecond))
	probe, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	plain := g.call(probe, cut, "/v1/functions/echo/invoke", nil)
	cancel()
	t.Logf("cut off: a plain call of echo (no quota, no key) through the cut gateway, not asserted: %s, in %s", plain, plain.done.Sub(plain.sent).Round(time.Millisecond))

	eventually(t, 60*time.Second, "a call of the new function through the majority", func() bool {
		return g.call(context.Background(), majority[1], "/v1/functions/majfn/invoke", nil).ok()
	})
	as := concurrently(20, 4, func(k int) answer { return g.call(context.Background(), majority[k%2], "/e/q3/", nil) })
	served := statuses(as)[http.StatusOK]
	if served != 20 {
		t.Errorf("calls through q3 on the majority: %v, want 20 x 200", statuses(as))
	}
	cliOK(t, g.nodes[majority[0]].bin, "account", "create", "during-cut", "--home", g.nodes[majority[0]].home)

	g.lab.heal(cut)
	healed = true
	healAt := time.Now()
	n := g.nodes[cut]
	eventually(t, 60*time.Second, "the healed gateway to have what the majority wrote", func() bool {
		code, _, _ := runBin(t, n.bin, "account", "show", "during-cut", "--home", n.home)
		return code == 0 && g.request(context.Background(), cut, http.MethodGet, "/v1/functions/majfn", "", nil).ok() &&
			g.today(t, cut, "q3") == served
	})
	t.Logf("healed: the cut gateway has the majority's writes %s later", time.Since(healAt).Round(time.Millisecond))
	for i := range groupGateways {
		if today := g.today(t, i, "q3"); today != served {
			t.Errorf("gateway %d counts %d calls of q3 today, want %d", i, today, served)
		}
		for _, name := range refused {
			if a := g.request(context.Background(), i, http.MethodGet, "/v1/functions/"+name, "", nil); a.status != http.StatusNotFound {
				t.Errorf("the deploy refused on the cut gateway: %s on gateway %d: %s", name, i, a)
			}
		}
	}
	g.waitHealthy(t)
}

// waitNoQuorum repeats try until the cut gateway answers 503 saying there
// is no quorum (bounded): an answer 2xx is an acknowledged write on a
// minority, an error. It logs how long it took.
func (g *gwGroup) waitNoQuorum(t *testing.T, cut int, cutAt time.Time, what string, try func(k int) answer) {
	t.Helper()
	began := time.Now()
	var last answer
	for k := 0; ; k++ {
		last = try(k)
		if last.ok() {
			t.Errorf("%s on the cut-off gateway %d succeeded: %s", what, cut, last)
		}
		if last.err == nil && last.status == http.StatusServiceUnavailable && strings.Contains(last.body, noQuorum) {
			t.Logf("cut off: %s through the cut gateway answered 503 %q, %s after the cut (%d tries, the last took %s)",
				what, strings.TrimSpace(last.body), time.Since(cutAt).Round(time.Millisecond), k+1, last.done.Sub(last.sent).Round(time.Millisecond))
			return
		}
		if time.Since(began) > 30*time.Second {
			t.Fatalf("%s on the cut-off gateway %d: no 503 saying %q within 30 s; the last answer: %s", what, cut, noQuorum, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// today is the calls of endpoint name counted today, as gateway i says
// (-1 when it does not answer).
func (g *gwGroup) today(t *testing.T, i int, name string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	e, err := g.client(i).GetEndpoint(ctx, name)
	if err != nil {
		return -1
	}
	return e.Today
}
