package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opendms/dms/dms/api"
)

// Invoke calls a function and returns its answer, whatever its status: a
// function's 404 is a Response, not an error. An error is the gateway's
// own (errors.Is matches dms/api's sentinels; a Retry-After is kept); one
// that happened after the call made a task is a *CallError naming it.
// call's Path is escaped (as the gateway hands it on) and goes as it is;
// its RawQuery must not use rev or async: they are the gateway's.
func (c *Client) Invoke(ctx context.Context, name string, call Call) (Response, error) {
	req, err := c.invokeRequest(ctx, name, call, false)
	if err != nil {
		return Response{}, err
	}
	return c.answer(req)
}

// InvokeAsync hands a call to the gateway and returns its task at once;
// TaskResult reads the answer when the task has completed.
func (c *Client) InvokeAsync(ctx context.Context, name string, call Call) (Task, error) {
	req, err := c.invokeRequest(ctx, name, call, true)
	if err != nil {
		return Task{}, err
	}
	var task Task
	if err := c.decode(req, &task); err != nil {
		return Task{}, err
	}
	return task, nil
}

// TaskResult is a completed task's response, as Invoke returns it.
func (c *Client) TaskResult(ctx context.Context, id string) (Response, error) {
	req, err := c.request(ctx, http.MethodGet, taskPath(id)+"/result", nil)
	if err != nil {
		return Response{}, err
	}
	c.authorize(req)
	return c.answer(req)
}

// CallEndpoint calls /e/NAME with call's method, path, query, headers and
// body, as any HTTP client would; the client's API key goes along (for an
// endpoint with auth "key"), its admin token never does. The answer is
// read as Invoke's: a policy's refusal (403, 429 with Retry-After) is an
// error.
func (c *Client) CallEndpoint(ctx context.Context, name string, call Call) (Response, error) {
	path := "/e/" + url.PathEscape(name) + call.Path
	req, err := c.callRequest(ctx, path, call.RawQuery, call)
	if err != nil {
		return Response{}, err
	}
	if c.auth.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.auth.Key)
	}
	return c.answer(req)
}

// invokeRequest is the request of an invoke: the call's path after
// .../invoke, its query with the gateway's rev and async added.
func (c *Client) invokeRequest(ctx context.Context, name string, call Call, async bool) (*http.Request, error) {
	path := functionPath(name) + "/invoke" + call.Path
	query := []string{}
	if call.RawQuery != "" {
		query = append(query, call.RawQuery)
	}
	if call.Revision != 0 {
		query = append(query, "rev="+strconv.Itoa(call.Revision))
	}
	if async {
		query = append(query, "async=1")
	}
	req, err := c.callRequest(ctx, path, strings.Join(query, "&"), call)
	if err != nil {
		return nil, err
	}
	c.authorize(req)
	return req, nil
}

// callRequest is a request carrying call's method, headers and body.
func (c *Client) callRequest(ctx context.Context, path, rawQuery string, call Call) (*http.Request, error) {
	if rawQuery != "" {
		path += "?" + rawQuery
	}
	method := call.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := c.request(ctx, method, path, call.Body)
	if err != nil {
		return nil, err
	}
	for k, vs := range call.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Del("Authorization")
	req.Header.Del(HeaderAccount)
	if call.IdempotencyKey != "" {
		req.Header.Set(HeaderIdempotencyKey, call.IdempotencyKey)
	}
	return req, nil
}

// answer sends a call's request and reads a function's answer: a
// response with DMS-Task and without DMS-Error is the function's, with any
// status; any other status over 299 is an error.
func (c *Client) answer(req *http.Request) (Response, error) {
	resp, err := c.send(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	task := resp.Header.Get(HeaderTask)
	if resp.Header.Get(HeaderError) != "" || task == "" && resp.StatusCode >= 300 {
		return Response{}, withTask(api.DecodeError(resp), task)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("gateway: reading the answer of task %s: %w", task, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body, Task: task}, nil
}

// withTask makes err a *CallError when the gateway named its task.
func withTask(err error, task string) error {
	if task == "" {
		return err
	}
	return &CallError{Task: task, Err: err}
}
