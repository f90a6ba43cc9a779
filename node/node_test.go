package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ipfs/go-cid"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// memStore is an in-memory Store.
type memStore struct {
	mu   sync.Mutex
	recs map[string][]byte
}

func newMemStore() *memStore { return &memStore{recs: map[string][]byte{}} }

func (m *memStore) Put(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[key] = b
	return nil
}

func (m *memStore) Lookup(key string, v any) (bool, error) {
	m.mu.Lock()
	b, ok := m.recs[key]
	m.mu.Unlock()
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(b, v)
}

func (m *memStore) Write(put map[string]any, del []string) error {
	enc := make(map[string][]byte, len(put))
	for k, v := range put {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		enc[k] = b
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	maps.Copy(m.recs, enc)
	for _, k := range del {
		delete(m.recs, k)
	}
	return nil
}

func (m *memStore) Scan(prefix string, fn func(string, []byte) error) error {
	return m.scanWhere(func(k string) bool { return strings.HasPrefix(k, prefix) }, fn)
}

// scanWhere calls fn with the records whose keys match, in key order,
// outside the lock.
func (m *memStore) scanWhere(match func(string) bool, fn func(string, []byte) error) error {
	m.mu.Lock()
	var keys []string
	for k := range m.recs {
		if match(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = m.recs[k]
	}
	m.mu.Unlock()
	for i, k := range keys {
		if err := fn(k, vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// memBlobs is an in-memory Blobs.
type memBlobs struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemBlobs() *memBlobs { return &memBlobs{m: map[string][]byte{}} }

func (b *memBlobs) Put(data []byte) (string, error) {
	c := types.CIDOf(data).String()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[c] = data
	return c, nil
}

func (b *memBlobs) Get(c string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.m[c]
	if !ok {
		return nil, fmt.Errorf("no blob %s", c)
	}
	return d, nil
}

func (b *memBlobs) Has(c string) bool { _, err := b.Get(c); return err == nil }

// fakeNet records what the node sends and serves the requester's blobs,
// and those of other peers. Like the real network it verifies what it
// fetches, and says when a peer holds no such blob.
type fakeNet struct {
	requester *memBlobs
	sent      chan types.Message
	unreached atomic.Int32 // fetches that fail before the requester answers again
	away      atomic.Bool  // the requester is not connected
	mu        sync.Mutex
	provided  []string             // every Provide, in order
	peers     map[string]*memBlobs // other peers' blobs (the requester's is requester)
	down      map[string]bool      // peers that cannot be reached
	providers map[string][]string  // what FindProviders answers, by CID
	fetches   []string             // every fetch, "peer cid", in order
	lookups   []string             // every FindProviders, by CID
	// runReceipts are the receipts of runs delivered, in order; while
	// receiptsDown, every delivery fails (and refuse refuses them).
	runReceipts  []*types.Receipt
	receiptsDown atomic.Bool
	refuse       atomic.Bool
	receiptTries atomic.Int32 // SendReceipt calls
	awayBack     atomic.Bool  // awayRequester can be reached
}

// awayRequester cannot be reached until fakeNet.awayBack.
const awayRequester = "12D3KooWAway"

// holder gives peer a store of its own, holding data, and returns the CID.
func (f *fakeNet) holder(peer string, data []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peers == nil {
		f.peers = map[string]*memBlobs{}
	}
	if f.peers[peer] == nil {
		f.peers[peer] = newMemBlobs()
	}
	c, _ := f.peers[peer].Put(data)
	return c
}

func (f *fakeNet) FindProviders(_ context.Context, c string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups = append(f.lookups, c)
	return slices.Clone(f.providers[c])
}

// fetched returns the fetches so far.
func (f *fakeNet) fetched() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.fetches)
}

func (f *fakeNet) SendBid(ctx context.Context, _ string, _ []string, msg types.Message) error {
	select {
	case f.sent <- msg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeNet) FetchBlob(_ context.Context, peer string, c string) ([]byte, error) {
	f.mu.Lock()
	f.fetches = append(f.fetches, peer+" "+c)
	store, other := f.peers[peer]
	down := f.down[peer]
	f.mu.Unlock()
	switch {
	case down:
		return nil, errors.New("connection refused")
	case !other && peer != requester:
		return nil, fmt.Errorf("%w: %s is nobody", ErrBlobNotFound, peer)
	case !other:
		if f.unreached.Add(-1) >= 0 {
			return nil, errors.New("connection refused")
		}
		store = f.requester
	}
	data, err := store.Get(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBlobNotFound, err)
	}
	id, err := cid.Decode(c)
	if err != nil {
		return nil, err
	}
	return data, types.VerifyCID(id, data)
}

func (f *fakeNet) Connected(string) bool { return !f.away.Load() }

// SendReceipt passes a warm instance's receipts to sent and keeps a
// run's (no calls) in runReceipts, so that tests reading bids from sent
// do not meet them.
func (f *fakeNet) SendReceipt(ctx context.Context, _ string, r *types.Receipt) error {
	f.receiptTries.Add(1)
	switch {
	case f.receiptsDown.Load(), r.Requester == awayRequester && !f.awayBack.Load():
		return errors.New("connection refused")
	case f.refuse.Load():
		return fmt.Errorf("%w: not yours", ErrReceiptRefused)
	}
	if r.Calls == 0 {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.runReceipts = append(f.runReceipts, r)
		return nil
	}
	select {
	case f.sent <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeNet) Provide(_ context.Context, c string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.provided = append(f.provided, c)
	return nil
}

// fakeExec echoes its args, blocks until cancelled when the first is
// "block", and panics when it is "panic".
type fakeExec struct{}

func (fakeExec) Name() string { return "wasm" }

func (fakeExec) Run(ctx context.Context, in jobs.Input) (*jobs.Output, error) {
	mod := in.Module
	if mod == nil && in.Load != nil { // as a real executor with an empty cache does
		var err error
		if mod, err = in.Load(); err != nil {
			return nil, err
		}
	}
	if len(in.Args) > 0 && in.Args[0] == "block" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if len(in.Args) > 0 && in.Args[0] == "panic" {
		panic("the executor lost its mind")
	}
	out := &jobs.Output{ExitCode: 0, Stdout: []byte("ran " + strings.Join(in.Args, " ") + " on " + string(mod))}
	if len(in.Args) > 0 && in.Args[0] == "files" { // leaves a file, and says what it used
		if err := os.WriteFile(filepath.Join(in.OutputDir, "out.txt"), []byte("abc"), 0o600); err != nil {
			return nil, err
		}
		out.Usage = types.Usage{CPU: 2 * time.Millisecond, Wall: 3 * time.Millisecond, MemoryLimit: in.Memory, OutputBytes: int64(len(out.Stdout))}.WithMemoryTime()
	}
	return out, nil
}

type harness struct {
	t      testing.TB
	node   *Node
	net    *fakeNet
	store  Store
	blobs  *memBlobs // the node's own
	module string
}

const requester = "12D3KooWRequester"

var offered = types.Resources{CPU: 2000, Memory: 1 << 30, Disk: 1 << 30}

func newHarness(t testing.TB, st *memStore, lockTTL time.Duration) *harness {
	t.Helper()
	return newHarnessWith(t, st, lockTTL)
}

func newHarnessWith(t testing.TB, st Store, lockTTL time.Duration) *harness {
	t.Helper()
	return newHarnessConfig(t, st, func(c *Config) { c.LockTTL = lockTTL })
}

// newHarnessConfig is newHarnessWith with the config as tweak leaves it.
func newHarnessConfig(t testing.TB, st Store, tweak func(*Config)) *harness {
	t.Helper()
	reqBlobs := newMemBlobs()
	module, _ := reqBlobs.Put([]byte("module-bytes"))
	net := &fakeNet{requester: reqBlobs, sent: make(chan types.Message, 64)}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	cfg := Config{
		ID:        types.NodeID{PeerID: "12D3KooWProvider"},
		Record:    types.CapabilityRecord{Offered: offered, Price: types.Credit, Executors: []string{"wasm"}},
		Executors: map[string]jobs.Executor{"wasm": fakeExec{}},
		WorkDir:   t.TempDir(), Clock: time.Now, NewID: jobNamesAlloc,
	}
	tweak(&cfg)
	blobs := newMemBlobs()
	n, err := New(system, cfg, net, st, blobs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &harness{t: t, node: n, net: net, store: st, blobs: blobs, module: module}
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

// jobNamesAlloc is the tests' NewID: a bid for job "a1" names allocation "a1".
func jobNamesAlloc(job types.JobID) types.AllocationID { return types.AllocationID(job) }

// accept asks for a bid for job alloc, then accepts allocation alloc.
func (h *harness) accept(alloc string, r types.Resources) types.Message {
	h.t.Helper()
	return bidAndAccept(h.t, h.node, h.net, requester, alloc, r)
}

// bidAndAccept asks n for a bid for job alloc from "from", takes one answer
// off net (a bid or a decline: with concurrent callers, maybe another's),
// and accepts allocation alloc.
func bidAndAccept(t testing.TB, n *Node, net *fakeNet, from, alloc string, r types.Resources) types.Message {
	t.Helper()
	n.HandleBidRequest(from, &types.BidRequest{JobID: types.JobID(alloc), Requester: from, Executor: "wasm", Resources: r, Deadline: time.Now().Add(time.Minute)})
	<-net.sent
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := n.Accept(ctx, from, &types.Accept{JobID: types.JobID(alloc), AllocationID: types.AllocationID(alloc), Resources: r})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func (h *harness) invoke(alloc string, epoch uint64, args ...string) ([]*types.Status, error) {
	var got []*types.Status
	err := h.node.Invoke(h.ctx(), requester, &types.Invocation{
		JobID: "j", AllocationID: types.AllocationID(alloc), Epoch: epoch,
		Task: types.Task{Executor: "wasm", Module: h.module, Args: args, Resources: types.Resources{CPU: 1000, Memory: 1 << 20}},
	}, func(st *types.Status) error { got = append(got, st); return nil })
	return got, err
}

func TestBidOrDecline(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	deadline := time.Now().Add(time.Minute)
	h.node.HandleBidRequest(requester, &types.BidRequest{JobID: "fits", Requester: requester, Executor: "wasm", Resources: types.Resources{CPU: 1000, Memory: 1 << 20}, Deadline: deadline})
	if bid, ok := (<-h.net.sent).(*types.Bid); !ok || bid.JobID != "fits" || bid.Price != types.Credit {
		t.Fatalf("want a bid for the job that fits, got %#v", bid)
	}
	h.node.HandleBidRequest(requester, &types.BidRequest{JobID: "huge", Requester: requester, Executor: "wasm", Resources: types.Resources{Memory: 900 << 40}, Deadline: deadline})
	d, ok := (<-h.net.sent).(*types.Decline)
	if !ok || len(d.Reasons) != 1 || d.Reasons[0] != "memory: need 900 TiB, offered 1 GiB" {
		t.Fatalf("want a decline saying why, got %#v", d)
	}
}

func TestAcceptInvokeComplete(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	c, ok := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	if !ok || c.Epoch == 0 {
		t.Fatalf("accept: %#v", c)
	}
	if _, err := h.invoke("a1", c.Epoch+1); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("wrong epoch: %v", err)
	}
	if err := h.node.Invoke(h.ctx(), "12D3KooWSomeoneElse", &types.Invocation{AllocationID: "a1", Epoch: c.Epoch}, func(*types.Status) error { return nil }); !errors.Is(err, ErrNotYours) {
		t.Fatalf("another requester: %v", err)
	}
	sts, err := h.invoke("a1", c.Epoch, "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 2 || sts[0].State != types.AllocRunning || sts[1].State != types.AllocCompleted || sts[1].Result == nil {
		t.Fatalf("statuses %+v", sts)
	}
	var rec Allocation
	if ok, _ := h.store.Lookup(AllocationPrefix+"a1", &rec); !ok || rec.State != types.AllocCompleted || rec.Result.Stdout != sts[1].Result.Stdout {
		t.Fatalf("record %+v", rec)
	}
	info, _ := h.node.Info(h.ctx())
	if info.Available != offered || info.Running != 0 {
		t.Fatalf("capability not released: %+v", info)
	}
	st, err := h.node.Status(h.ctx(), requester, &types.StatusQuery{AllocationID: "a1"})
	if err != nil || st.(*types.Status).State != types.AllocCompleted {
		t.Fatalf("status of a finished allocation: %v, %v", st, err)
	}
}

// A run's result carries what its executor measured, with its output
// files added to its output.
func TestRunUsage(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	sts, err := h.invoke("a1", c.Epoch, "files")
	if err != nil || len(sts) != 2 || sts[1].Result == nil || sts[1].Result.Usage == nil {
		t.Fatalf("statuses %+v, %v", sts, err)
	}
	res := sts[1].Result
	stdout := res.Sizes[res.Stdout]
	want := types.Usage{CPU: 2 * time.Millisecond, Wall: 3 * time.Millisecond, MemoryLimit: 1 << 20, OutputBytes: stdout + 3}.WithMemoryTime()
	if *res.Usage != want || stdout == 0 {
		t.Fatalf("usage %+v, want %+v", *res.Usage, want)
	}
	var rec Allocation
	if ok, _ := h.store.Lookup(AllocationPrefix+"a1", &rec); !ok || rec.Result.Usage == nil || *rec.Result.Usage != want {
		t.Fatalf("record %+v", rec.Result)
	}
}

// A job puts nothing in protoactor's process registry (no future per ask,
// no actor per allocation): its 32,768 maps never give back what a key
// once made them allocate, so a long-lived node would grow with every job.
func TestAJobRegistersNoProcess(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	registry := h.node.root.ActorSystem().ProcessRegistry
	before := atomic.LoadUint64(&registry.SequenceID)
	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	if sts, err := h.invoke("a1", c.Epoch, "x"); err != nil || len(sts) != 2 {
		t.Fatalf("invoke: %+v, %v", sts, err)
	}
	if _, err := h.node.Status(h.ctx(), requester, &types.StatusQuery{AllocationID: "a1"}); err != nil {
		t.Fatal(err)
	}
	if after := atomic.LoadUint64(&registry.SequenceID); after != before {
		t.Fatalf("a job registered %d processes", after-before)
	}
}

// A requester that restarts invokes its allocation again with the same
// epoch: one that ended meanwhile answers with its final status and result;
// another epoch or another requester learns nothing.
func TestInvokeAgainAfterTheEndGivesTheFinalStatus(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	first, err := h.invoke("a1", c.Epoch, "x")
	if err != nil || len(first) != 2 {
		t.Fatalf("first invocation: %+v, %v", first, err)
	}
	again, err := h.invoke("a1", c.Epoch, "x")
	if err != nil || len(again) != 1 || again[0].State != types.AllocCompleted || again[0].Result == nil ||
		again[0].Result.Stdout != first[1].Result.Stdout {
		t.Fatalf("invoked again: %+v, %v", again, err)
	}
	if _, err := h.invoke("a1", c.Epoch+1, "x"); !errors.Is(err, ErrUnknownAllocation) {
		t.Fatalf("another epoch: %v", err)
	}
	err = h.node.Invoke(h.ctx(), "12D3KooWSomeoneElse", &types.Invocation{AllocationID: "a1", Epoch: c.Epoch}, func(*types.Status) error { return nil })
	if !errors.Is(err, ErrUnknownAllocation) {
		t.Fatalf("another requester: %v", err)
	}
	if info, _ := h.node.Info(h.ctx()); info.Available != offered || info.Running != 0 {
		t.Fatalf("invoking a finished allocation took capability: %+v", info)
	}
}

// A requester that cannot be reached for a moment (it restarts) does not
// fail the task: the node fetches its module again.
func TestModuleFetchOutlastsAnUnreachableRequester(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	h.net.unreached.Store(3)
	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	sts, err := h.invoke("a1", c.Epoch, "x")
	if err != nil || sts[len(sts)-1].State != types.AllocCompleted {
		t.Fatalf("last status %+v, %v", sts[len(sts)-1], err)
	}
	if n := h.net.unreached.Load(); n != -1 {
		t.Fatalf("fetch attempts left the counter at %d: want 3 failures, then 1 success", n)
	}
}

// Results are announced in the DHT off the job's path, each blob once: the
// same output of two jobs (an empty stderr, say) is announced once.
func TestResultsAnnouncedOnce(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	var outs []string
	for _, id := range []string{"a1", "a2"} {
		c := h.accept(id, types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
		sts, err := h.invoke(id, c.Epoch, "same")
		if err != nil || sts[len(sts)-1].Result == nil {
			t.Fatalf("%s: %+v, %v", id, sts, err)
		}
		outs = append(outs, sts[len(sts)-1].Result.Stdout)
	}
	if outs[0] != outs[1] {
		t.Fatalf("two runs of one program gave %v", outs)
	}
	// Announcements go out in order, one at a time: once a marker queued
	// after both runs is out, any second announcement of the stdout is too.
	h.node.announce("marker")
	waitUntil(t, func() bool {
		h.net.mu.Lock()
		defer h.net.mu.Unlock()
		return slices.Contains(h.net.provided, "marker")
	})
	h.net.mu.Lock()
	defer h.net.mu.Unlock()
	if n := len(slices.DeleteFunc(slices.Clone(h.net.provided), func(c string) bool { return c != outs[0] })); n != 1 {
		t.Fatalf("the shared stdout was announced %d times: %v", n, h.net.provided)
	}
}

func TestConcurrentAcceptsNeverOversubscribe(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	var wg sync.WaitGroup
	confirms := make(chan types.Message, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			confirms <- h.accept(fmt.Sprintf("a%d", i), types.Resources{CPU: 1000, Memory: 512 << 20})
		}()
	}
	wg.Wait()
	close(confirms)
	n := 0
	for m := range confirms {
		if _, ok := m.(*types.Confirm); ok {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d of 50 full-size accepts confirmed on a node with room for 2", n)
	}
}

func TestCancelRunning(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	done := make(chan []*types.Status)
	go func() {
		sts, _ := h.invoke("a1", c.Epoch, "block")
		done <- sts
	}()
	waitUntil(t, func() bool { in, _ := h.node.Info(h.ctx()); return in.Running == 1 })
	if _, err := h.node.Cancel(h.ctx(), requester, &types.Cancel{AllocationID: "a1", Reason: "user"}); err != nil {
		t.Fatal(err)
	}
	sts := <-done
	if last := sts[len(sts)-1]; last.State != types.AllocCancelled || !strings.Contains(last.Reason, "user") {
		t.Fatalf("last status %+v", last)
	}
	if in, _ := h.node.Info(h.ctx()); in.Available != offered {
		t.Fatalf("cancel did not release: %+v", in)
	}
}

func TestLockExpiresWithoutInvocation(t *testing.T) {
	h := newHarness(t, newMemStore(), 50*time.Millisecond)
	c := h.accept("a1", types.Resources{CPU: 2000, Memory: 1 << 20}).(*types.Confirm)
	waitUntil(t, func() bool { in, _ := h.node.Info(h.ctx()); return in.Locked == 0 })
	// The invocation learns why: the allocation failed when its lock expired.
	if sts, err := h.invoke("a1", c.Epoch); err != nil || len(sts) != 1 || sts[0].State != types.AllocFailed || !strings.Contains(sts[0].Reason, "lock expired") {
		t.Fatalf("invoking an expired lock: %+v, %v", sts, err)
	}
	// It leaves no record, only an audit entry.
	var rec Allocation
	if ok, _ := h.store.Lookup(AllocationPrefix+"a1", &rec); ok {
		t.Fatalf("an expired lock kept its record %+v", rec)
	}
	if ok, _ := h.store.Lookup(auditKey(0), &rec); !ok || rec.AllocationID != "a1" || rec.State != types.AllocFailed {
		t.Fatalf("audit entry %+v", rec)
	}
}

func TestRestartRestoresLocksAndFailsRunning(t *testing.T) {
	st := newMemStore()
	h := newHarness(t, st, time.Minute)
	h.accept("held", types.Resources{CPU: 1000, Memory: 1 << 20})
	c := h.accept("run", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	go h.invoke("run", c.Epoch, "block")
	waitUntil(t, func() bool { in, _ := h.node.Info(h.ctx()); return in.Running == 1 })
	// A crash: the records stay as they were at this moment.
	snapshot := newMemStore()
	st.mu.Lock()
	for k, v := range st.recs {
		snapshot.recs[k] = v
	}
	st.mu.Unlock()
	h2 := newHarness(t, snapshot, time.Minute)
	in, _ := h2.node.Info(h2.ctx())
	if in.Locked != 1 || in.Available.CPU != 1000 {
		t.Fatalf("after restart: %+v (want the unexpired lock held, the running allocation gone)", in)
	}
	var rec Allocation
	if ok, _ := snapshot.Lookup(AllocationPrefix+"run", &rec); !ok || rec.State != types.AllocFailed || !strings.Contains(rec.Reason, "restarted") {
		t.Fatalf("running allocation after restart: %+v", rec)
	}
	next := h2.accept("new", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	if next.Epoch <= c.Epoch {
		t.Fatalf("epoch %d reused after restart (had %d)", next.Epoch, c.Epoch)
	}
}

func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLosingBidIsWithdrawnByItsRequesterOnly(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	req := &types.BidRequest{JobID: "j", Requester: requester, Executor: "wasm", Resources: offered, Deadline: time.Now().Add(time.Minute)}
	h.node.HandleBidRequest(requester, req)
	if _, ok := (<-h.net.sent).(*types.Bid); !ok {
		t.Fatal("no bid")
	}
	other := &types.BidRequest{JobID: "k", Requester: requester, Executor: "wasm", Resources: offered, Deadline: time.Now().Add(time.Minute)}
	h.node.HandleBidRequest(requester, other)
	if d, ok := (<-h.net.sent).(*types.Decline); !ok || !d.Busy {
		t.Fatalf("while the bid holds everything, want a busy decline, got %#v", d)
	}
	if _, err := h.node.Cancel(h.ctx(), "12D3KooWSomeoneElse", &types.Cancel{JobID: "j"}); err != nil {
		t.Fatal(err)
	}
	if in, _ := h.node.Info(h.ctx()); in.Available == offered {
		t.Fatal("another requester withdrew the bid's hold")
	}
	if _, err := h.node.Cancel(h.ctx(), requester, &types.Cancel{JobID: "j", Reason: "placed on another node"}); err != nil {
		t.Fatal(err)
	}
	// The room the withdrawn bid held goes to the job declined as busy (late binding).
	if b, ok := (<-h.net.sent).(*types.Bid); !ok || b.JobID != "k" {
		t.Fatalf("once the bid is withdrawn, want a late bid for k, got %#v", b)
	}
	if _, err := h.node.Cancel(h.ctx(), requester, &types.Cancel{JobID: "k", Reason: "placed on another node"}); err != nil {
		t.Fatal(err)
	}
	if in, _ := h.node.Info(h.ctx()); in.Available != offered {
		t.Fatalf("after the requester withdrew both bids: %+v", in)
	}
}

// Locks that end unused leave no record: each leaves an audit entry, the
// log keeps the last AuditSize, and a restart still never issues an epoch
// again, though the records that had them are gone.
func TestUnusedLocksLeaveABoundedAuditAndMonotonicEpochs(t *testing.T) {
	st := newMemStore()
	h := newHarness(t, st, time.Minute)
	r := types.Resources{CPU: 1000, Memory: 1 << 20}
	var last uint64
	for i := range AuditSize + 5 {
		id := fmt.Sprint("a", i)
		c, ok := h.accept(id, r).(*types.Confirm)
		if !ok || c.Epoch <= last {
			t.Fatalf("accept %d: %#v (last epoch %d)", i, c, last)
		}
		last = c.Epoch
		if _, err := h.node.Cancel(h.ctx(), requester, &types.Cancel{JobID: types.JobID(id), AllocationID: c.AllocationID}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(prefix string) int {
		n := 0
		_ = st.Scan(prefix, func(string, []byte) error { n++; return nil })
		return n
	}
	if a, l := count(AllocationPrefix), count(AuditPrefix); a != 0 || l != AuditSize {
		t.Fatalf("%d allocation records and %d audit entries, want none and %d", a, l, AuditSize)
	}
	// The requester still learns how its last allocation ended.
	st1, err := h.node.Status(h.ctx(), requester, &types.StatusQuery{AllocationID: types.AllocationID(fmt.Sprint("a", AuditSize+4))})
	if s, ok := st1.(*types.Status); err != nil || !ok || s.State != types.AllocCancelled {
		t.Fatalf("status of a cancelled lock: %#v, %v", st1, err)
	}
	h.node.Close()

	h2 := newHarness(t, st, time.Minute)
	next := h2.accept("after", r).(*types.Confirm)
	if next.Epoch <= last {
		t.Fatalf("epoch %d issued after a restart, had issued %d", next.Epoch, last)
	}
	if _, err := h2.node.Cancel(h2.ctx(), requester, &types.Cancel{JobID: "after", AllocationID: "after"}); err != nil {
		t.Fatal(err)
	}
	last = next.Epoch
	// Without node/epoch, the audit log alone keeps the latest epochs.
	h2.node.Close()
	st.mu.Lock()
	delete(st.recs, epochKey)
	st.mu.Unlock()
	h3 := newHarness(t, st, time.Minute)
	if next := h3.accept("later", r).(*types.Confirm); next.Epoch <= last {
		t.Fatalf("epoch %d issued again without node/epoch (had %d)", next.Epoch, last)
	}
}
