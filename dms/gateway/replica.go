package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/group"
)

// The gateway's state machine. Every change of the records a gateway
// group shares (accounts, keys, functions and revisions, endpoints and
// their quota counts, the tasks of async and keyed calls with their
// inputs and keys, the queues' leaders) is a command that the machine
// applies, in the order the group commits it, the same on every member. A
// gateway alone applies its commands at once, through the same machine:
// there is one code path.
//
// A command is either a change (records to put and delete, applied only
// if the records its writer read still hold what it read: optimistic
// concurrency across gateways, while the gateway's own locks keep its own
// writers from racing) or an admission (a call counted against its
// endpoint's quota, and the task, input and Idempotency-Key of a call the
// group keeps, decided by the machine itself so that gateways at once
// never pass a quota).
//
// The records a gateway keeps for itself stay out of the machine: the
// count of each function's calls, and the tasks of plain synchronous
// calls (no Idempotency-Key), whose answer goes to their caller only.
// Neither costs the group a write, which keeps consensus off the hot path
// of a warm function.

// Records of a group only.
const (
	queuePrefix = "gw/queue/" // gw/queue/<account>/<function>: Queue, which member leads the function's queue
	admitPrefix = "gw/admit/" // gw/admit/<endpoint>/<day>/<task ID>: a call admitted against the quota, so that its admission applied twice counts once
	// chargedPrefix: gw/charged/<entry ID>: the digest of the receipt an
	// entry charged to an account (Charge), so that it counts once.
	chargedPrefix = "gw/charged/"
	// invoicePrefix: gw/invoice/<account>/<period>: a closed Invoice.
	invoicePrefix = "gw/invoice/"
)

// appliedKey holds the index of the last command that wrote, written with
// it: a command at or below it is not applied again when raft replays its
// log at a start.
const appliedKey = "gw/applied"

func queueKey(acct, fn string) string    { return queuePrefix + acct + "/" + fn }
func admitsOf(ep string) string          { return admitPrefix + ep + "/" }
func admitKey(ep, day, id string) string { return admitsOf(ep) + day + "/" + id }

// functionOfKey splits a function's key into its account and name.
func functionOfKey(key string) (acct, fn string, ok bool) {
	return strings.Cut(strings.TrimPrefix(key, functionPrefix), "/")
}

// sharedPrefixes hold the records of the state machine (under taskPrefix,
// only the tasks the group keeps).
var sharedPrefixes = []string{
	accountPrefix, keyPrefix, functionPrefix, revisionPrefix, endpointPrefix, quotaPrefix,
	admitPrefix, taskPrefix, inputPrefix, idemPrefix, queuePrefix, ledgerPrefix, chargedPrefix, settledPrefix, statementPrefix, invoicePrefix,
}

// shared reports whether the group keeps t: an async call's task, whose
// call runs wherever the function's queue is led, or a keyed call's,
// whose key any member must find.
func (t Task) shared() bool { return t.Async || t.Idempotency != "" }

// sharedRecord reports whether a record (key, raw) is the state machine's.
func sharedRecord(key string, raw []byte) bool {
	if strings.HasPrefix(key, taskPrefix) {
		var t Task
		return json.Unmarshal(raw, &t) == nil && t.shared()
	}
	for _, p := range sharedPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// command is one entry of the machine's log: a change or an admission.
type command struct {
	Change *change    `json:"change,omitempty"`
	Admit  *admission `json:"admit,omitempty"`
}

// absent is what a change's check expects of a record that was not there.
var absent = json.RawMessage("null")

// change puts and deletes records, if each record of Check still holds
// the bytes its writer read (absent: not there).
type change struct {
	Check map[string]json.RawMessage `json:"check,omitempty"`
	Put   map[string]json.RawMessage `json:"put,omitempty"`
	Del   []string                   `json:"del,omitempty"`
}

// admission admits a call: counted against Quota when it has one, and its
// task (with its input and its key) written when the group keeps it.
type admission struct {
	Task  Task       `json:"task"`
	Input *callInput `json:"input,omitempty"`
	Quota *quotaUse  `json:"quota,omitempty"`
}

// quotaUse is a call counted against an endpoint's quota of a day.
type quotaUse struct {
	Endpoint string `json:"endpoint"`
	Day      string `json:"day"`
	Limit    int    `json:"limit"`
}

// outcome is what applying a command came to.
type outcome struct {
	Stale     bool   `json:"stale,omitempty"`     // a change's check failed: nothing was written
	Error     string `json:"error,omitempty"`     // the write failed on the member that answered
	Duplicate string `json:"duplicate,omitempty"` // the task of an earlier call with the admission's key
	Over      bool   `json:"over,omitempty"`      // the quota is used up (Used calls): not admitted
	Used      int    `json:"used,omitempty"`
	Busy      string `json:"busy,omitempty"` // not admitted: too many of the account's (or all) kept tasks are open
}

// effect is a record a command changed: its new value, nil if deleted.
type effect struct {
	key string
	val json.RawMessage
}

// machine is the gateway's state machine (group.FSM).
type machine struct {
	g  *Gateway
	mu sync.Mutex // serialises applies: a gateway alone applies from many goroutines
	// index is the last entry applied; a gateway alone counts its own.
	// written is the last that wrote (appliedKey).
	index, written uint64
	// open counts the unfinished tasks the group keeps, per account and
	// in all: an admission past MaxAccountInFlight or MaxCallsInFlight is
	// refused (429), so async calls cannot pile up without bound. openMu
	// guards them for readers outside applies (enter).
	openMu  sync.Mutex
	open    map[string]int
	openAll int
}

var _ group.FSM = (*machine)(nil)

// newMachine makes the machine of g over what its database holds.
func newMachine(g *Gateway) (*machine, error) {
	m := &machine{g: g, open: map[string]int{}}
	if _, err := g.db.Lookup(appliedKey, &m.written); err != nil {
		return nil, err
	}
	m.index = m.written
	return m, m.recount()
}

// Apply applies one committed command and says how it went. A command
// the database holds already (raft replays its log from the last
// snapshot at a start) is passed over.
func (m *machine) Apply(index uint64, cmd []byte) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applyLocked(index, cmd)
}

// applyNext applies a command of a gateway alone, as the next entry.
func (m *machine) applyNext(cmd []byte) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applyLocked(m.index+1, cmd)
}

func (m *machine) applyLocked(index uint64, cmd []byte) []byte {
	if index <= m.written {
		m.index = max(m.index, index)
		return mustJSON(outcome{})
	}
	m.index = index
	out, effects := m.apply(cmd)
	m.g.applied(effects)
	b, err := json.Marshal(out)
	if err != nil {
		panic(err) // an outcome always encodes
	}
	return b
}

func (m *machine) apply(cmd []byte) (outcome, []effect) {
	var c command
	if err := json.Unmarshal(cmd, &c); err != nil {
		return outcome{Error: "a command that does not decode: " + err.Error()}, nil
	}
	switch {
	case c.Change != nil:
		return m.change(c.Change)
	case c.Admit != nil:
		return m.admit(c.Admit)
	}
	return outcome{Error: "an empty command"}, nil
}

func (m *machine) change(c *change) (outcome, []effect) {
	for key, want := range c.Check {
		raw, found, err := m.g.db.LookupRaw(key)
		switch {
		case err != nil:
			return outcome{Error: err.Error()}, nil
		case bytes.Equal(want, absent) && found, !bytes.Equal(want, absent) && (!found || !bytes.Equal(raw, want)):
			return outcome{Stale: true}, nil
		}
	}
	return m.write(c.Put, c.Del)
}

func (m *machine) admit(a *admission) (outcome, []effect) {
	t, db := a.Task, m.g.db
	if t.shared() {
		if _, done, err := db.LookupRaw(taskKey(t.Account, t.ID)); err != nil || done {
			return outcome{Error: errString(err)}, nil // applied before: admitted then
		}
	}
	if t.Idempotency != "" {
		var earlier string
		found, err := db.Lookup(idemKey(t), &earlier)
		if err != nil {
			return outcome{Error: err.Error()}, nil
		}
		if found {
			if _, kept, err := db.LookupRaw(taskKey(t.Account, earlier)); err != nil || kept {
				return outcome{Error: errString(err), Duplicate: earlier}, nil
			} // its task is gone: the key is free again
		}
	}
	put := map[string]json.RawMessage{}
	var del []string
	if q := a.Quota; q != nil {
		marker := admitKey(q.Endpoint, q.Day, t.ID)
		if _, done, err := db.LookupRaw(marker); err != nil || done {
			return outcome{Error: errString(err)}, nil
		}
		var used int
		found, err := db.Lookup(quotaKey(q.Endpoint, q.Day), &used)
		switch {
		case err != nil:
			return outcome{Error: err.Error()}, nil
		case used >= q.Limit:
			return outcome{Over: true, Used: used}, nil
		case !found: // the first call of a day: the other days' counts go
			for _, prefix := range []string{quotasOf(q.Endpoint), admitsOf(q.Endpoint)} {
				stale, err := keys(db, prefix)
				if err != nil {
					return outcome{Error: err.Error()}, nil
				}
				del = append(del, stale...)
			}
		}
		put[quotaKey(q.Endpoint, q.Day)] = mustJSON(used + 1)
		put[marker] = mustJSON(true)
	}
	if t.shared() {
		switch acct, all := m.opened(t.Account); {
		case all >= MaxCallsInFlight:
			return outcome{Busy: fmt.Sprintf("the gateway group holds %d unfinished calls, its limit", all)}, nil
		case acct >= MaxAccountInFlight:
			return outcome{Busy: fmt.Sprintf("account %q has %d unfinished calls, an account's limit", t.Account, acct)}, nil
		}
		put[taskKey(t.Account, t.ID)] = mustJSON(t)
		if a.Input != nil {
			put[inputKey(t.Account, t.ID)] = mustJSON(a.Input)
		}
		if t.Idempotency != "" {
			put[idemKey(t)] = mustJSON(t.ID)
		}
	}
	return m.write(put, del)
}

// write puts and deletes records in one transaction, and keeps the count
// of open tasks.
func (m *machine) write(put map[string]json.RawMessage, del []string) (outcome, []effect) {
	vals := make(map[string]any, len(put)+1)
	vals[appliedKey] = m.index
	effects := make([]effect, 0, len(put)+len(del))
	opened := map[string]int{}
	for key, raw := range put {
		vals[key] = raw
		effects = append(effects, effect{key: key, val: raw})
		if strings.HasPrefix(key, taskPrefix) {
			if err := m.countTask(opened, key, raw); err != nil {
				return outcome{Error: err.Error()}, nil
			}
		}
	}
	for _, key := range del {
		effects = append(effects, effect{key: key})
		if strings.HasPrefix(key, taskPrefix) {
			if err := m.countTask(opened, key, nil); err != nil {
				return outcome{Error: err.Error()}, nil
			}
		}
	}
	if err := m.g.db.Write(vals, del); err != nil {
		return outcome{Error: err.Error()}, nil
	}
	m.written = m.index
	for acct, n := range opened {
		m.addOpen(acct, n)
	}
	return outcome{}, effects
}

// countTask adds to opened what writing raw (nil: deleting) at key does
// to the count of open kept tasks.
func (m *machine) countTask(opened map[string]int, key string, raw json.RawMessage) error {
	open := func(b []byte) (string, bool) {
		var t Task
		if b == nil || json.Unmarshal(b, &t) != nil {
			return "", false
		}
		return t.Account, t.shared() && !t.State.Terminal()
	}
	old, _, err := m.g.db.LookupRaw(key)
	if err != nil {
		return err
	}
	if acct, was := open(old); was {
		opened[acct]--
	}
	if acct, is := open(raw); is {
		opened[acct]++
	}
	return nil
}

// opened returns the open kept tasks of acct, and of all accounts.
func (m *machine) opened(acct string) (int, int) {
	m.openMu.Lock()
	defer m.openMu.Unlock()
	return m.open[acct], m.openAll
}

func (m *machine) addOpen(acct string, n int) {
	m.openMu.Lock()
	defer m.openMu.Unlock()
	m.openAll += n
	if m.open[acct] += n; m.open[acct] <= 0 {
		delete(m.open, acct)
	}
}

// recount counts the open kept tasks from the records.
func (m *machine) recount() error {
	m.openMu.Lock()
	m.open, m.openAll = map[string]int{}, 0
	m.openMu.Unlock()
	return each(m.g.db, taskPrefix, func(_ string, t Task) error {
		if t.shared() && !t.State.Terminal() {
			m.addOpen(t.Account, 1)
		}
		return nil
	})
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the machine's records always encode
	}
	return b
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Snapshot copies the machine's records; applies wait meanwhile.
func (m *machine) Snapshot() (group.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := snapshot{index: m.index}
	for _, prefix := range sharedPrefixes {
		err := m.g.db.Scan(prefix, func(key string, raw []byte) error {
			if sharedRecord(key, raw) {
				s.keys, s.vals = append(s.keys, key), append(s.vals, raw)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// snapshot is the machine's records at one index.
type snapshot struct {
	index uint64
	keys  []string
	vals  [][]byte
}

// Persist writes the index, then the records as (key length, key, value
// length, value), all as uvarints but keys and values.
func (s *snapshot) Persist(w io.Writer) error {
	bw := bufio.NewWriter(w)
	var n [binary.MaxVarintLen64]byte
	if _, err := bw.Write(n[:binary.PutUvarint(n[:], s.index)]); err != nil {
		return err
	}
	for i, key := range s.keys {
		for _, b := range [][]byte{[]byte(key), s.vals[i]} {
			if _, err := bw.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))]); err != nil {
				return err
			}
			if _, err := bw.Write(b); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

func (s *snapshot) Release() {}

// maxSnapshotRecord bounds one key or value of a snapshot read.
const maxSnapshotRecord = 64 << 20

// Restore replaces the machine's records with a snapshot's.
func (m *machine) Restore(r io.Reader) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	br := bufio.NewReader(r)
	read := func() ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		if n > maxSnapshotRecord {
			return nil, fmt.Errorf("gateway: a snapshot record of %d bytes", n)
		}
		b := make([]byte, n)
		_, err = io.ReadFull(br, b)
		return b, err
	}
	index, err := binary.ReadUvarint(br)
	if err != nil {
		return fmt.Errorf("gateway: reading a snapshot: %w", err)
	}
	put := map[string]any{appliedKey: index}
	for {
		key, err := read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("gateway: reading a snapshot: %w", err)
		}
		val, err := read()
		if err != nil {
			return fmt.Errorf("gateway: reading a snapshot: %w", io.ErrUnexpectedEOF)
		}
		put[string(key)] = json.RawMessage(val)
	}
	var stale []string
	for _, prefix := range sharedPrefixes {
		err := m.g.db.Scan(prefix, func(key string, raw []byte) error {
			if _, kept := put[key]; !kept && sharedRecord(key, raw) {
				stale = append(stale, key)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := writeBatches(m.g, put, stale); err != nil {
		return err
	}
	if err := m.recount(); err != nil {
		return err
	}
	m.index, m.written = index, index
	m.g.restored()
	return nil
}

// writeBatches writes put and deletes del in transactions of at most
// restoreBatch records.
func writeBatches(g *Gateway, put map[string]any, del []string) error {
	const restoreBatch = 1000
	batch := map[string]any{}
	for key, v := range put {
		if batch[key] = v; len(batch) == restoreBatch {
			if err := g.db.Write(batch, nil); err != nil {
				return err
			}
			batch = map[string]any{}
		}
	}
	if err := g.db.Write(batch, nil); err != nil {
		return err
	}
	for len(del) > 0 {
		n := min(len(del), restoreBatch)
		if err := g.db.Write(nil, del[:n]); err != nil {
			return err
		}
		del = del[n:]
	}
	return nil
}

// propose applies a command, through the group when the gateway is in
// one. A group without quorum is ErrUnavailable.
func (g *Gateway) propose(ctx context.Context, c command) (outcome, error) {
	cmd, err := json.Marshal(c)
	if err != nil {
		return outcome{}, fmt.Errorf("gateway: encoding a command: %w", err)
	}
	var raw []byte
	if g.grp == nil {
		raw = g.m.applyNext(cmd)
	} else {
		if err := g.awaitHealthy(ctx); err != nil {
			return outcome{}, err
		}
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, proposeTimeout)
			defer cancel()
		}
		res, err := g.grp.Apply(ctx, cmd)
		if err != nil {
			return outcome{}, &api.RetryError{Err: fmt.Errorf("%w: the gateway group has no quorum: %w", api.ErrUnavailable, err), After: noQuorumRetry}
		}
		raw = res.Data
	}
	var o outcome
	if err := json.Unmarshal(raw, &o); err != nil {
		return outcome{}, fmt.Errorf("gateway: an outcome that does not decode: %w", err)
	}
	if o.Error != "" {
		return o, fmt.Errorf("gateway: applying a change: %s", o.Error)
	}
	return o, nil
}

// awaitHealthy waits, a little, for this member to be in touch with a
// leader: a member cut off from the majority refuses a write at once,
// rather than after proposeTimeout, but one in an election waits for it.
func (g *Gateway) awaitHealthy(ctx context.Context) error {
	if g.grp.Healthy() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, electionWait)
	defer cancel()
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for !g.grp.Healthy() {
		select {
		case <-ctx.Done():
			return &api.RetryError{Err: fmt.Errorf("%w: the gateway group has no quorum: this member has heard from no leader for %s", api.ErrUnavailable, electionWait), After: noQuorumRetry}
		case <-tick.C:
		}
	}
	return nil
}

// Bounds of a write through the group.
const (
	// proposeTimeout bounds a write whose caller set no deadline: a
	// member cut off from the majority answers 503 rather than wait.
	proposeTimeout = 3 * time.Second
	// noQuorumRetry is the Retry-After of a write refused for want of a
	// quorum: about an election.
	noQuorumRetry = 2 * time.Second
	// maxStale bounds the times a change is read again because another
	// gateway changed what it read.
	maxStale = 8
	// electionWait is how long a write waits for a member that heard from
	// no leader lately to find one: about two elections.
	electionWait = 1500 * time.Millisecond
	healthPoll   = 20 * time.Millisecond
)

// tx stages a change of the machine's records from what it read.
type tx struct {
	g     *Gateway
	check map[string]json.RawMessage
	put   map[string]json.RawMessage
	del   []string
}

// lookup reads a record into v, and checks at commit that it is unchanged.
func (t *tx) lookup(key string, v any) (bool, error) {
	raw, found, err := t.g.db.LookupRaw(key)
	if err != nil {
		return false, err
	}
	if !found {
		t.check[key] = absent
		return false, nil
	}
	t.check[key] = raw
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("gateway: decoding %s: %w", key, err)
	}
	return true, nil
}

// find is lookup with find's errors: ErrNotFound naming the kind and name.
func txFind[T any](t *tx, valid bool, key, kind, name string) (T, error) {
	var v T
	if !valid {
		return v, notFound(kind, name)
	}
	found, err := t.lookup(key, &v)
	if err == nil && !found {
		err = notFound(kind, name)
	}
	return v, err
}

func (t *tx) set(key string, v any) {
	t.put[key] = mustJSON(v)
}

func (t *tx) delete(keys ...string) { t.del = append(t.del, keys...) }

// update runs fn, which reads through its tx and stages writes in it, and
// commits what it staged; if another gateway changed a record fn read
// meanwhile, fn runs again on what is there now.
func (g *Gateway) update(ctx context.Context, fn func(*tx) error) error {
	for range maxStale {
		t := &tx{g: g, check: map[string]json.RawMessage{}, put: map[string]json.RawMessage{}}
		if err := fn(t); err != nil {
			return err
		}
		if len(t.put)+len(t.del) == 0 {
			return nil
		}
		o, err := g.propose(ctx, command{Change: &change{Check: t.check, Put: t.put, Del: t.del}})
		if err != nil || !o.Stale {
			return err
		}
	}
	return fmt.Errorf("%w: the records changed on other gateways %d times while this change was made; try again", api.ErrConflict, maxStale)
}
