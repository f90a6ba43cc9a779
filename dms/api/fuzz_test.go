package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
)

// replyTransport answers every request with one status and body, in memory:
// what a daemon (or whatever listens at api.json's address) might send.
type replyTransport struct {
	status int
	body   []byte
}

func (rt replyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: rt.status, Status: fmt.Sprintf("%d %s", rt.status, http.StatusText(rt.status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   io.NopCloser(bytes.NewReader(rt.body)), ContentLength: int64(len(rt.body)), Request: req,
	}, nil
}

func replyClient(status int, body []byte) *Client {
	c := NewClient(Endpoint{Addr: "daemon.invalid", Token: testToken})
	c.http = &http.Client{Transport: replyTransport{status: status, body: body}}
	return c
}

// statusSentinel is the error a Client's error for status must match, if any.
func statusSentinel(status int) error {
	for _, se := range statusErrors {
		if se.status == status {
			return se.err
		}
	}
	return nil
}

// canonical fails unless v's JSON decodes into a fresh value with the same JSON.
func canonical[T any](t *testing.T, v T) {
	t.Helper()
	a, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("a decoded %T does not encode: %v", v, err)
	}
	var back T
	if err := json.Unmarshal(a, &back); err != nil {
		t.Fatalf("%s does not decode: %v", a, err)
	}
	if b, _ := json.Marshal(back); !bytes.Equal(a, b) {
		t.Fatalf("round trip changed %T:\nbefore %s\nafter  %s", v, a, b)
	}
}

// FuzzClientReply feeds the client arbitrary replies to GetJob, ListJobs
// and Node. An error status always gives a non-empty error that matches its
// sentinel (a 400 with problems is a *jobs.SpecError); a success either
// decodes to values that re-encode unchanged or says it could not decode.
// Seeds are in testdata/fuzz/FuzzClientReply.
func FuzzClientReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, status uint16, body []byte) {
		code := int(status)
		if code < 200 || code > 599 {
			code = 200 + code%400
		}
		c := replyClient(code, body)
		ctx := context.Background()
		job, jobErr := c.GetJob(ctx, "j")
		list, listErr := c.ListJobs(ctx)
		info, nodeErr := c.Node(ctx)
		for _, err := range []error{jobErr, listErr, nodeErr} {
			if code >= 300 {
				checkStatusError(t, code, err)
			} else if err != nil && !strings.Contains(err.Error(), "decoding reply") {
				t.Fatalf("a %d reply failed with %v", code, err)
			}
		}
		if jobErr == nil {
			canonical(t, job)
		}
		if listErr == nil {
			canonical(t, list)
		}
		if nodeErr == nil {
			canonical(t, info)
		}
	})
}

func checkStatusError(t *testing.T, code int, err error) {
	t.Helper()
	if err == nil || err.Error() == "" {
		t.Fatalf("status %d gave error %q", code, err)
	}
	if se, ok := errors.AsType[*jobs.SpecError](err); ok {
		if code != http.StatusBadRequest || len(se.Problems) == 0 || !errors.Is(err, jobs.ErrInvalidSpec) {
			t.Fatalf("status %d gave spec error %v", code, err)
		}
		return
	}
	if want := statusSentinel(code); want != nil && !errors.Is(err, want) {
		t.Fatalf("status %d gave %v, which does not match %v", code, err, want)
	}
}

// FuzzWatchJob feeds the client arbitrary event streams: the channel always
// closes, nothing follows a terminal state, and every job re-encodes
// unchanged. Seeds are in testdata/fuzz/FuzzWatchJob.
func FuzzWatchJob(f *testing.F) {
	f.Fuzz(func(t *testing.T, stream []byte) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, err := replyClient(http.StatusOK, stream).WatchJob(ctx, "j")
		if err != nil {
			t.Fatal(err)
		}
		timeout := time.After(10 * time.Second)
		var got []Job
		for {
			select {
			case j, ok := <-ch:
				if !ok {
					for i, j := range got {
						if j.State.Terminal() && i != len(got)-1 {
							t.Fatalf("event %d of %d is terminal (%s)", i+1, len(got), j.State)
						}
						canonical(t, j)
					}
					return
				}
				got = append(got, j)
			case <-timeout:
				t.Fatalf("the event channel is still open after %d events of a finished stream", len(got))
			}
		}
	})
}

// FuzzWatchBatch feeds the client arbitrary snapshot streams: the channel
// always closes, nothing follows a batch that ended, and every batch
// re-encodes unchanged.
func FuzzWatchBatch(f *testing.F) {
	f.Add([]byte(`{"id":"b-1","state":"running","counts":{"units":3,"queued":3}}` + "\n" +
		`{"id":"b-1","state":"completed","counts":{"units":3,"completed":3,"rate":1.5,"eta_ns":0}}` + "\n"))
	f.Add([]byte(`{"id":"b-1","state":"cancelled"}{"id":"b-1","state":"running"}`))
	f.Add([]byte(`{"id":"b-1","state":"completed","spec":{"name":"x","template":{"module":"m"},"units":{"range":"1..2"}}}`))
	f.Fuzz(func(t *testing.T, stream []byte) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, err := replyClient(http.StatusOK, stream).WatchBatch(ctx, "b-1")
		if err != nil {
			t.Fatal(err)
		}
		timeout := time.After(10 * time.Second)
		var got []Batch
		for {
			select {
			case b, ok := <-ch:
				if !ok {
					for i, b := range got {
						if b.State != BatchRunning && i != len(got)-1 {
							t.Fatalf("snapshot %d of %d ended the batch (%s)", i+1, len(got), b.State)
						}
						canonical(t, b)
					}
					return
				}
				got = append(got, b)
			case <-timeout:
				t.Fatalf("the snapshot channel is still open after %d snapshots of a finished stream", len(got))
			}
		}
	})
}
