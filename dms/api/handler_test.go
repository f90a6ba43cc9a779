package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

const testToken = "secret-token"

// harness serves a fakeService through the handler and holds a client for it.
type harness struct {
	svc    *fakeService
	srv    *httptest.Server
	client *Client
}

// newHarness limits blobs to 64 bytes, to test the limit.
func newHarness(t *testing.T) *harness { return newHarnessLimit(t, 64) }

func newHarnessLimit(t *testing.T, maxBlob int64) *harness {
	t.Helper()
	svc := newFakeService()
	h := &handler{svc: svc, token: []byte(testToken), logger: slogDiscard(), maxBlob: maxBlob}
	srv := httptest.NewServer(h.routes())
	t.Cleanup(srv.Close)
	return &harness{svc: svc, srv: srv, client: NewClient(Endpoint{Addr: srv.Listener.Addr().String(), Token: testToken})}
}

// do sends a raw request with the token and returns the status and body.
func (h *harness) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// badBody is a body a route refuses, and what its error says.
type badBody struct{ name, body, want string }

// refuses posts each body to path: each gets a 400 (a 413 when oversized)
// whose error says what it should.
func (h *harness) refuses(t *testing.T, path string, cases []badBody) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := h.do(t, http.MethodPost, path, c.body)
			if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d: %s", status, body)
			}
			var eb errorBody
			_ = json.Unmarshal(body, &eb)
			if !strings.Contains(eb.Error, c.want) {
				t.Fatalf("body %s\nwant it to say %q", body, c.want)
			}
		})
	}
}

// addJob puts a job in the fake with the given state and result.
func (h *harness) addJob(id string, state types.JobState, res *types.Result) Job {
	j := Job{ID: id, Name: "n-" + id, State: state, Node: "12D3KooWPeer", Result: res, CreatedAt: time.Unix(1_700_000_000, 0).UTC()}
	h.svc.mu.Lock()
	h.svc.jobs[id] = j
	h.svc.mu.Unlock()
	return j
}

func moduleCID(t *testing.T) string {
	t.Helper()
	return types.CIDOf([]byte("\x00asm\x01\x00\x00\x00")).String()
}

func TestUnauthorized(t *testing.T) {
	h := newHarness(t)
	routes := [][2]string{{"GET", "/v1/jobs"}, {"POST", "/v1/jobs"}, {"GET", "/v1/jobs/x"}, {"GET", "/v1/jobs/x/events"},
		{"DELETE", "/v1/jobs/x"}, {"POST", "/v1/blobs"}, {"GET", "/v1/node"}, {"POST", "/v1/node/benchmark"}, {"GET", "/v1/peers"},
		{"GET", "/v1/store"}, {"POST", "/v1/store/gc"}, {"PUT", "/v1/store/pins/x"}, {"DELETE", "/v1/store/pins/x"},
		{"POST", "/v1/peers/reputation/x/forgive"}, {"POST", "/v1/batches"}, {"GET", "/v1/batches"}, {"GET", "/v1/batches/x/units"}, {"DELETE", "/v1/batches/x"},
		{"GET", "/v1/jobs/x/receipts"}, {"GET", "/v1/earnings"}, {"GET", "/v1/jobs/x/trace"}, {"GET", "/v1/traces/x"}}
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + testToken + "x", testToken, "Basic " + testToken} {
		for _, rt := range routes {
			req, _ := http.NewRequest(rt[0], h.srv.URL+rt[1], nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %q: status %d", rt[0], rt[1], auth, resp.StatusCode)
			}
		}
	}
	bad := NewClient(Endpoint{Addr: h.srv.Listener.Addr().String(), Token: "wrong"})
	if _, err := bad.Node(context.Background()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("client with wrong token: %v", err)
	}
}

func TestEmptyTokenRefusesAll(t *testing.T) {
	srv := httptest.NewServer(NewHandler(newFakeService(), "", nil))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/node", nil)
	req.Header.Set("Authorization", "Bearer ")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestSubmitInvalidSpecNamesTheField(t *testing.T) {
	h := newHarness(t)
	status, body := h.do(t, "POST", "/v1/jobs", "name: ok\nmodule: "+moduleCID(t)+"\nresources: {memory: lots}\ncolour: red\n")
	if status != http.StatusBadRequest {
		t.Fatalf("status %d: %s", status, body)
	}
	var eb struct {
		Error    string `json:"error"`
		Problems []struct{ Field, Problem string }
	}
	if err := json.Unmarshal(body, &eb); err != nil {
		t.Fatal(err)
	}
	fields := map[string]bool{}
	for _, p := range eb.Problems {
		fields[p.Field] = true
	}
	if !fields["resources.memory"] || !strings.Contains(eb.Error, "colour") {
		t.Fatalf("body does not name the bad fields: %s", body)
	}
	if len(h.svc.submitted) != 0 {
		t.Fatal("an invalid spec reached the service")
	}
}

func TestClientSubmitLocalModuleIsSpecError(t *testing.T) {
	h := newHarness(t)
	spec, err := jobs.Parse([]byte("name: local\nmodule: ./prog.wasm\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.client.SubmitJob(context.Background(), spec)
	var se *jobs.SpecError
	if !errors.As(err, &se) || !errors.Is(err, jobs.ErrInvalidSpec) || se.Problems[0].Field != "module" {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "module") || !strings.Contains(err.Error(), "POST /v1/blobs") {
		t.Fatalf("message does not say what to do: %v", err)
	}
}

func TestClientJobs(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	spec, err := jobs.Parse([]byte(`{"name": "hello", "module": "` + moduleCID(t) + `", "args": ["a", "b"]}`))
	if err != nil {
		t.Fatal(err)
	}
	job, err := h.client.SubmitJob(ctx, spec)
	if err != nil || job.ID != "job-1" || job.Name != "hello" || job.State != types.JobPending {
		t.Fatalf("SubmitJob = %+v, %v", job, err)
	}
	if got := h.svc.submitted[0]; got.Module != spec.Module || len(got.Args) != 2 {
		t.Fatalf("service got spec %+v", got)
	}
	if got, err := h.client.GetJob(ctx, "job-1"); err != nil || got.ID != "job-1" {
		t.Fatalf("GetJob = %+v, %v", got, err)
	}
	if list, err := h.client.ListJobs(ctx); err != nil || len(list) != 1 {
		t.Fatalf("ListJobs = %+v, %v", list, err)
	}
	if err := h.client.CancelJob(ctx, "job-1"); err != nil {
		t.Fatalf("CancelJob: %v", err)
	}
	h.addJob("done", types.JobCompleted, &types.Result{})
	if err := h.client.CancelJob(ctx, "done"); !errors.Is(err, ErrConflict) {
		t.Fatalf("cancel of a finished job: %v", err)
	}
}

func TestUnknownJob(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for _, path := range []string{"/v1/jobs/nope", "/v1/jobs/nope/events", "/v1/jobs/nope/stdout"} {
		if status, body := h.do(t, "GET", path, ""); status != http.StatusNotFound || !bytes.Contains(body, []byte(`"error"`)) {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}
	if _, err := h.client.GetJob(ctx, "nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("GetJob: %v", err)
	}
	if _, err := h.client.WatchJob(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("WatchJob: %v", err)
	}
	if err := h.client.CancelJob(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("CancelJob: %v", err)
	}
}

func TestWatchStreamsEveryState(t *testing.T) {
	h := newHarness(t)
	live := make(chan Job)
	h.svc.live["j"] = live
	events, err := h.client.WatchJob(context.Background(), "j")
	if err != nil {
		t.Fatal(err)
	}
	// Each state must arrive before the next is sent: the stream is flushed
	// line by line, not buffered until the end.
	for _, s := range []types.JobState{types.JobPending, types.JobBidding, types.JobPlaced, types.JobRunning, types.JobCompleted} {
		live <- Job{ID: "j", State: s}
		if got := <-events; got.State != s {
			t.Fatalf("got %s, want %s", got.State, s)
		}
	}
	close(live)
	if j, ok := <-events; ok {
		t.Fatalf("stream goes on after the terminal state: %+v", j)
	}
}

func TestWatchRawNDJSON(t *testing.T) {
	h := newHarness(t)
	h.svc.watch["j"] = []Job{{ID: "j", State: types.JobBidding}, {ID: "j", State: types.JobRunning}, {ID: "j", State: types.JobFailed, Reason: "no bids"}}
	resp, err := http.DefaultClient.Do(authed(t, "GET", h.srv.URL+"/v1/jobs/j/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	data, _ := io.ReadAll(resp.Body)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], `"reason":"no bids"`) {
		t.Fatalf("stream:\n%s", data)
	}
}

func TestWatchEndsWhenServerCloses(t *testing.T) {
	svc := newFakeService()
	svc.live["j"] = make(chan Job) // never sends
	s, err := Serve("127.0.0.1:0", NewHandler(svc, testToken, nil))
	if err != nil {
		t.Fatal(err)
	}
	events, err := NewClient(Endpoint{Addr: s.Addr(), Token: testToken}).WatchJob(context.Background(), "j")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close waited for the open stream: %v", err)
	}
	if _, ok := <-events; ok {
		t.Fatal("event after close")
	}
}

func authed(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	return req
}

func TestJobOutput(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	out, _ := h.client.PutBlob(ctx, strings.NewReader("hello\n"))
	errc, _ := h.client.PutBlob(ctx, strings.NewReader("oops\n"))
	h.addJob("done", types.JobCompleted, &types.Result{Stdout: out, Stderr: errc})
	h.addJob("busy", types.JobRunning, nil)
	h.addJob("dead", types.JobFailed, nil)
	cases := []struct {
		path   string
		status int
		body   string
	}{
		{"/v1/jobs/done/stdout", 200, "hello\n"},
		{"/v1/jobs/done/stderr", 200, "oops\n"},
		{"/v1/jobs/busy/stdout", 409, ""},
		{"/v1/jobs/dead/stderr", 404, ""},
	}
	for _, c := range cases {
		status, body := h.do(t, "GET", c.path, "")
		if status != c.status || (c.body != "" && string(body) != c.body) {
			t.Errorf("GET %s: %d %q", c.path, status, body)
		}
	}
}

func TestBlobs(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c, err := h.client.PutBlob(ctx, strings.NewReader("data"))
	if err != nil || c != types.CIDOf([]byte("data")).String() {
		t.Fatalf("PutBlob = %q, %v", c, err)
	}
	if got, err := h.client.GetBlob(ctx, c); err != nil || string(got) != "data" {
		t.Fatalf("GetBlob = %q, %v", got, err)
	}
	if _, err := h.client.GetBlob(ctx, types.CIDOf([]byte("other")).String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown blob: %v", err)
	}
	if _, err := h.client.GetBlob(ctx, "not-a-cid"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad CID: %v", err)
	}
	if _, err := h.client.PutBlob(ctx, strings.NewReader(strings.Repeat("x", 65))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("blob over the limit: %v", err)
	}
	if status, body := h.do(t, "POST", "/v1/blobs", "abc"); status != http.StatusCreated || !bytes.Contains(body, []byte(`"cid":"b`)) {
		t.Fatalf("raw POST /v1/blobs: %d %s", status, body)
	}
}

func TestNodeAndPeers(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.svc.node = NodeInfo{PeerID: "12D3KooWX", DID: "did:key:z6Mk", Addrs: []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWX"}}
	h.svc.peers = []Peer{{ID: "12D3KooWY", Addrs: []string{"/ip4/127.0.0.1/tcp/2"}, LatencyMillis: 0.5}}
	if info, err := h.client.Node(ctx); err != nil || info.PeerID != "12D3KooWX" || len(info.Addrs) != 1 {
		t.Fatalf("Node = %+v, %v", info, err)
	}
	if info, err := h.client.Benchmark(ctx); err != nil || info.Running != 42 {
		t.Fatalf("Benchmark = %+v, %v", info, err)
	}
	if peers, err := h.client.Peers(ctx); err != nil || len(peers) != 1 || peers[0].LatencyMillis != 0.5 {
		t.Fatalf("Peers = %+v, %v", peers, err)
	}
	h.svc.peers = nil
	if status, body := h.do(t, "GET", "/v1/peers", ""); status != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("no peers: %d %s", status, body)
	}
	if status, body := h.do(t, "GET", "/v1/peers/reputation", ""); status != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("no reputation: %d %s", status, body)
	}
	h.svc.reputation = []PeerReputation{{ID: "liar", Penalty: 2, Poor: true, Unheard: true, LastEvent: "lost", Events: map[string]int{"lost": 1},
		Agreed: 3, Disagreed: 1, Distrusted: true}}
	if rep, err := h.client.Reputation(ctx); err != nil || len(rep) != 1 || rep[0].ID != "liar" || !rep[0].Poor || rep[0].Events["lost"] != 1 ||
		rep[0].Agreed != 3 || rep[0].Disagreed != 1 || !rep[0].Distrusted {
		t.Fatalf("Reputation = %+v, %v", rep, err)
	}
	if err := h.client.ForgivePeer(ctx, "liar"); err != nil || h.svc.reputation[0].Distrusted {
		t.Fatalf("ForgivePeer: %v, %+v", err, h.svc.reputation[0])
	}
	if err := h.client.ForgivePeer(ctx, "liar"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not distrusted") {
		t.Fatalf("ForgivePeer of a peer not distrusted: %v", err)
	}
	if status, _ := h.do(t, "GET", "/v1/peers/reputation/liar/forgive", ""); status != http.StatusMethodNotAllowed {
		t.Fatalf("GET forgive: %d, want 405", status)
	}
}

func TestInternalError(t *testing.T) {
	h := newHarness(t)
	h.svc.failWith = errors.New("dms: disk on fire")
	_, err := h.client.Node(context.Background())
	if err == nil || err.Error() != "dms: disk on fire" || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	if status, _ := h.do(t, "GET", "/v1/node", ""); status != http.StatusInternalServerError {
		t.Fatalf("status %d", status)
	}
}

// TestStoreEndpoints: store info, a collection, and pins, through the
// client; a bad CID is a 400, unpinning what is not pinned a 404.
func TestStoreEndpoints(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c, err := h.client.PutBlob(ctx, strings.NewReader("a blob"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.client.Pin(ctx, c); err != nil {
		t.Fatal(err)
	}
	info, err := h.client.StoreInfo(ctx)
	if err != nil || info.Blobs != 1 || info.BlobBytes != 6 || info.MaxBytes != 4<<30 || len(info.Pins) != 1 || info.Pins[0] != c {
		t.Fatalf("store info %+v, %v", info, err)
	}
	col, err := h.client.CollectGarbage(ctx)
	if err != nil || col.BlobsRemoved != 2 || col.FreedBytes != 2<<20 || h.svc.gcs != 1 {
		t.Fatalf("collection %+v, %v (%d calls)", col, err, h.svc.gcs)
	}
	if err := h.client.Unpin(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Unpin(ctx, c); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "is not pinned") {
		t.Fatalf("unpinning twice: %v", err)
	}
	for _, method := range []string{http.MethodPut, http.MethodDelete} {
		if status, body := h.do(t, method, "/v1/store/pins/not-a-cid", ""); status != http.StatusBadRequest {
			t.Errorf("%s a bad CID: %d %s", method, status, body)
		}
	}
	if status, body := h.do(t, http.MethodPut, "/v1/store/pins/"+c, ""); status != http.StatusNoContent {
		t.Errorf("PUT a pin: %d %s", status, body)
	}
	status, body := h.do(t, http.MethodGet, "/v1/store", "")
	var raw map[string]any
	if status != http.StatusOK || json.Unmarshal(body, &raw) != nil || raw["max_bytes"] != float64(4<<30) {
		t.Errorf("GET /v1/store: %d %s", status, body)
	}
}

// A job's receipts and the node's earnings: the period is a month or
// none, anything else is 400.
func TestReceiptsAndEarnings(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.svc.receipts = map[string][]Receipt{"j1": {{Receipt: types.Receipt{ID: "a/1", JobID: "j1", AllocationID: "a", Seq: 1, Price: types.Credit, Amount: 278},
		Provider: "p", Digest: "d"}}, "j2": nil}
	if got, err := h.client.JobReceipts(ctx, "j1"); err != nil || len(got) != 1 || got[0].Amount != 278 || got[0].Digest != "d" {
		t.Fatalf("JobReceipts = %+v, %v", got, err)
	}
	if _, err := h.client.JobReceipts(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("receipts of no job: %v", err)
	}
	h.svc.earnings = Earnings{Lines: []EarningLine{{Requester: "r", Account: "acme", Receipts: 2, Amount: 556}}, Receipts: 2, Total: 556}
	e, err := h.client.Earnings(ctx, "2026-12")
	if err != nil || e.Total != 556 || len(e.Lines) != 1 || !e.From.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) || !e.To.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Earnings = %+v, %v", e, err)
	}
	if status, body := h.do(t, "GET", "/v1/earnings?period=december", ""); status != http.StatusBadRequest || !strings.Contains(string(body), "not a month") {
		t.Fatalf("a bad period: %d %s", status, body)
	}
	h.svc.earnings = Earnings{}
	if status, body := h.do(t, "GET", "/v1/earnings", ""); status != 200 || !strings.Contains(string(body), `"lines":[]`) {
		t.Fatalf("no earnings: %d %s", status, body)
	}
}

// A job's trace comes back as the service gathered it; an unknown job is
// 404.
func TestJobTrace(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)
	h.svc.traces = map[string]Trace{"j1": {Job: "j1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		Spans: []Span{{Span: types.Span{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", ID: "00f067aa0ba902b7", Name: "job", Start: at, End: at.Add(time.Second)}, Node: "12D3KooWReq"}},
		Nodes: []TraceNode{{Node: "12D3KooWReq", Spans: 1}, {Node: "12D3KooWGone", Error: "unreachable"}}}}
	got, err := h.client.JobTrace(ctx, "j1")
	if err != nil || len(got.Spans) != 1 || got.Spans[0].Node != "12D3KooWReq" || !got.Spans[0].End.Equal(at.Add(time.Second)) || len(got.Nodes) != 2 || got.Nodes[1].Error != "unreachable" {
		t.Fatalf("JobTrace = %+v, %v", got, err)
	}
	if _, err := h.client.JobTrace(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("trace of no job: %v", err)
	}
}

// A trace of calls comes back by its trace ID; an unknown one is 404
// (TestUnauthorized checks its route takes the token).
func TestCallTrace(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	h.svc.traces = map[string]Trace{"": {TraceID: id, Nodes: []TraceNode{{Node: "12D3KooWGw", Spans: 2}}}}
	got, err := h.client.CallTrace(ctx, id)
	if err != nil || got.TraceID != id || got.Job != "" || len(got.Nodes) != 1 {
		t.Fatalf("CallTrace = %+v, %v", got, err)
	}
	if _, err := h.client.CallTrace(ctx, "00f067aa0ba902b700f067aa0ba902b7"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("trace of no call: %v", err)
	}
}
