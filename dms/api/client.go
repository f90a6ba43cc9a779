package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/opendms/dms/jobs"
)

// Client calls a daemon's API. It is a Service and is safe for concurrent use.
type Client struct {
	base  string // http://host:port
	token string
	http  *http.Client
}

var _ Service = (*Client)(nil)

// NewClient returns a client for the daemon at e.
func NewClient(e Endpoint) *Client {
	return &Client{base: "http://" + e.Addr, token: e.Token, http: &http.Client{}}
}

// SubmitJob sends spec (whose module must be a CID: see Upload).
func (c *Client) SubmitJob(ctx context.Context, spec *jobs.Spec) (Job, error) {
	return submit[Job](ctx, c, "/v1/jobs", "spec", spec)
}

// ListJobs returns the jobs the daemon submitted.
func (c *Client) ListJobs(ctx context.Context) ([]Job, error) {
	return get[[]Job](ctx, c, http.MethodGet, "/v1/jobs")
}

// GetJob returns one job.
func (c *Client) GetJob(ctx context.Context, id string) (Job, error) {
	return get[Job](ctx, c, http.MethodGet, jobPath(id))
}

// CancelJob cancels a job.
func (c *Client) CancelJob(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, jobPath(id), nil, nil)
}

// PutBlob uploads r's content and returns its CID.
func (c *Client) PutBlob(ctx context.Context, r io.Reader) (string, error) {
	var out struct {
		CID string `json:"cid"`
	}
	err := c.call(ctx, http.MethodPost, "/v1/blobs", r, &out)
	return out.CID, err
}

// GetBlob downloads a blob.
func (c *Client) GetBlob(ctx context.Context, cid string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/blobs/"+url.PathEscape(cid), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("api: reading blob %s: %w", cid, err)
	}
	return data, nil
}

// HasBlob asks whether the daemon holds a blob (HEAD /v1/blobs/{cid}).
func (c *Client) HasBlob(ctx context.Context, cid string) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, "/v1/blobs/"+url.PathEscape(cid), nil)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return true, nil
}

// Node describes the daemon's node.
func (c *Client) Node(ctx context.Context) (NodeInfo, error) {
	return get[NodeInfo](ctx, c, http.MethodGet, "/v1/node")
}

// Peers lists the daemon's peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	return get[[]Peer](ctx, c, http.MethodGet, "/v1/peers")
}

// Reputation lists the daemon's standing of the peers it asked for bids.
func (c *Client) Reputation(ctx context.Context) ([]PeerReputation, error) {
	return get[[]PeerReputation](ctx, c, http.MethodGet, "/v1/peers/reputation")
}

// ForgivePeer clears a peer's distrust on the daemon.
func (c *Client) ForgivePeer(ctx context.Context, peer string) error {
	return c.call(ctx, http.MethodPost, "/v1/peers/reputation/"+url.PathEscape(peer)+"/forgive", nil, nil)
}

// Benchmark re-runs the daemon's capability benchmark.
func (c *Client) Benchmark(ctx context.Context) (NodeInfo, error) {
	return get[NodeInfo](ctx, c, http.MethodPost, "/v1/node/benchmark")
}

// StoreInfo describes what the daemon keeps on disk.
func (c *Client) StoreInfo(ctx context.Context) (StoreInfo, error) {
	return get[StoreInfo](ctx, c, http.MethodGet, "/v1/store")
}

// CollectGarbage asks the daemon to collect now.
func (c *Client) CollectGarbage(ctx context.Context) (Collection, error) {
	return get[Collection](ctx, c, http.MethodPost, "/v1/store/gc")
}

// Pin pins a blob on the daemon.
func (c *Client) Pin(ctx context.Context, cid string) error {
	return c.call(ctx, http.MethodPut, pinPath(cid), nil, nil)
}

// Unpin unpins a blob on the daemon.
func (c *Client) Unpin(ctx context.Context, cid string) error {
	return c.call(ctx, http.MethodDelete, pinPath(cid), nil, nil)
}

func pinPath(cid string) string { return "/v1/store/pins/" + url.PathEscape(cid) }

func jobPath(id string) string { return "/v1/jobs/" + url.PathEscape(id) }

// get does a request without a body and decodes its JSON reply into a T.
func get[T any](ctx context.Context, c *Client, method, path string) (T, error) {
	var v T
	err := c.call(ctx, method, path, nil, &v)
	return v, err
}

// submit posts v, a spec of what, as JSON and decodes the reply into a T.
func submit[T any](ctx context.Context, c *Client, path, what string, v any) (T, error) {
	var out T
	body, err := json.Marshal(v)
	if err != nil {
		return out, fmt.Errorf("api: encoding %s: %w", what, err)
	}
	err = c.call(ctx, http.MethodPost, path, bytes.NewReader(body), &out)
	return out, err
}

// call does a request and decodes a JSON reply into out (unless out is nil).
func (c *Client) call(ctx context.Context, method, path string, body io.Reader, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api: %s %s: decoding reply: %w", method, path, err)
	}
	return nil
}

// do sends an authorized request and turns an error status into an error.
// On success the caller closes the body.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: cannot reach the daemon at %s (is `dms run` still running?): %w", req.URL.Host, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, DecodeError(resp)
	}
	return resp, nil
}

// WatchJob follows the job's event stream. The channel gets the current state,
// then every change, and is closed after a terminal state, when the stream
// ends or when ctx is done.
func (c *Client) WatchJob(ctx context.Context, id string) (<-chan Job, error) {
	return watchNDJSON(ctx, c, jobPath(id)+"/events", func(j Job) bool { return j.State.Terminal() })
}

// watchNDJSON follows the NDJSON stream at path. The channel gets each value,
// and is closed after one that is last, when the stream ends or when ctx
// is done.
func watchNDJSON[T any](ctx context.Context, c *Client, path string, last func(T) bool) (<-chan T, error) {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	out := make(chan T)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var v T
			if dec.Decode(&v) != nil { // end of stream, or ctx cancelled the request
				return
			}
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
			if last(v) {
				return
			}
		}
	}()
	return out, nil
}

// DecodeError turns an error response into an error that matches its
// sentinel (ErrNotFound, ...) and reads as the daemon's message. A 400 with
// problems becomes a *jobs.SpecError; a Retry-After header makes it a
// Retryer.
func DecodeError(resp *http.Response) error {
	var body errorBody
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(data, &body) != nil || body.Error == "" {
		body.Error = fmt.Sprintf("api: daemon replied %s", resp.Status)
	}
	if resp.StatusCode == http.StatusBadRequest && len(body.Problems) > 0 {
		return &jobs.SpecError{Problems: fromProblems(body.Problems), Doc: body.Doc}
	}
	err := &remoteError{status: resp.StatusCode, msg: body.Error}
	if secs, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && secs > 0 {
		err.retryAfter = time.Duration(secs) * time.Second
	}
	return err
}

// remoteError is an error reported by the daemon.
type remoteError struct {
	status     int
	msg        string
	retryAfter time.Duration
}

func (e *remoteError) Error() string { return e.msg }

// RetryAfter is the response's Retry-After (0 when it had none).
func (e *remoteError) RetryAfter() time.Duration { return e.retryAfter }

// Unwrap returns the sentinel of the status, so errors.Is works across the API.
func (e *remoteError) Unwrap() error {
	for _, se := range statusErrors {
		if se.status == e.status {
			return se.err
		}
	}
	return nil
}
