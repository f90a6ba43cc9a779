package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/opendms/dms/dms/api"
)

// Auth is who a Client acts as.
type Auth struct {
	// Key is an API key: the client acts as its account. It wins over
	// Token when both are set.
	Key string
	// Token is the node's admin token (the local API only): alone, for the
	// admin routes; with Account, acting as that account.
	Token   string
	Account string
}

// Client speaks to a gateway's handler. It is a Service (for the account
// its Auth acts as) and an Admin (with the admin token), and is safe for
// concurrent use.
type Client struct {
	base string // scheme://host:port, no trailing slash
	auth Auth
	http *http.Client
}

var (
	_ Service = (*Client)(nil)
	_ Admin   = (*Client)(nil)
)

// NewClient returns a client for the gateway at base (http://host:port or
// https://...). A nil hc is a default client; pass one to trust a private
// CA or to set timeouts (a call may run as long as its function's
// timeout).
func NewClient(base string, auth Auth, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimRight(base, "/"), auth: auth, http: hc}
}

// PutModule uploads a module (up to MaxModuleBody) and returns its CID.
func (c *Client) PutModule(ctx context.Context, r io.Reader) (string, error) {
	var out struct {
		CID string `json:"cid"`
	}
	err := c.call(ctx, http.MethodPost, "/v1/blobs", r, &out)
	return out.CID, err
}

// Deploy makes the function's next revision.
func (c *Client) Deploy(ctx context.Context, d Deploy) (Revision, error) {
	var rev Revision
	err := c.callJSON(ctx, http.MethodPost, "/v1/functions", d, &rev)
	return rev, err
}

// ListFunctions lists the account's functions that match q.
func (c *Client) ListFunctions(ctx context.Context, q Query) ([]Function, error) {
	var list []Function
	err := c.call(ctx, http.MethodGet, "/v1/functions"+listQueryString(q, nil), nil, &list)
	return list, err
}

// ListFunctionGroups lists the functions that match q, grouped by the
// value of their tag key.
func (c *Client) ListFunctionGroups(ctx context.Context, q Query, key string) ([]Group[Function], error) {
	var groups []Group[Function]
	err := c.call(ctx, http.MethodGet, "/v1/functions"+listQueryString(q, &key), nil, &groups)
	return groups, err
}

// GetFunction returns one function.
func (c *Client) GetFunction(ctx context.Context, name string) (Function, error) {
	var fn Function
	err := c.call(ctx, http.MethodGet, functionPath(name), nil, &fn)
	return fn, err
}

// Revisions lists a function's revisions.
func (c *Client) Revisions(ctx context.Context, name string) ([]Revision, error) {
	var list []Revision
	err := c.call(ctx, http.MethodGet, functionPath(name)+"/revisions", nil, &list)
	return list, err
}

// SetDefault switches the function's default revision.
func (c *Client) SetDefault(ctx context.Context, name string, rev int) (Function, error) {
	var fn Function
	err := c.callJSON(ctx, http.MethodPut, functionPath(name)+"/default", setDefaultBody{Revision: &rev}, &fn)
	return fn, err
}

// SetTags replaces the function's tags.
func (c *Client) SetTags(ctx context.Context, name string, tags map[string]string) (Function, error) {
	if tags == nil {
		tags = map[string]string{}
	}
	var fn Function
	err := c.callJSON(ctx, http.MethodPut, functionPath(name)+"/tags", setTagsBody{Tags: &tags}, &fn)
	return fn, err
}

// SetScaling replaces how the function's warm instances follow its load.
func (c *Client) SetScaling(ctx context.Context, name string, sc Scaling) (Function, error) {
	var fn Function
	err := c.callJSON(ctx, http.MethodPut, functionPath(name)+"/scaling", sc, &fn)
	return fn, err
}

// Instances lists the function's warm instances.
func (c *Client) Instances(ctx context.Context, name string) ([]Instance, error) {
	var list []Instance
	err := c.call(ctx, http.MethodGet, functionPath(name)+"/instances", nil, &list)
	return list, err
}

// DeleteFunction removes a function.
func (c *Client) DeleteFunction(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, functionPath(name), nil, nil)
}

// CreateEndpoint publishes an endpoint.
func (c *Client) CreateEndpoint(ctx context.Context, spec EndpointSpec) (Endpoint, error) {
	var e Endpoint
	err := c.callJSON(ctx, http.MethodPost, "/v1/endpoints", spec, &e)
	return e, err
}

// ListEndpoints lists the account's endpoints that match q.
func (c *Client) ListEndpoints(ctx context.Context, q Query) ([]Endpoint, error) {
	var list []Endpoint
	err := c.call(ctx, http.MethodGet, "/v1/endpoints"+listQueryString(q, nil), nil, &list)
	return list, err
}

// ListEndpointGroups lists the endpoints that match q, grouped by the
// value of their tag key.
func (c *Client) ListEndpointGroups(ctx context.Context, q Query, key string) ([]Group[Endpoint], error) {
	var groups []Group[Endpoint]
	err := c.call(ctx, http.MethodGet, "/v1/endpoints"+listQueryString(q, &key), nil, &groups)
	return groups, err
}

// GetEndpoint returns one endpoint, with today's count.
func (c *Client) GetEndpoint(ctx context.Context, name string) (Endpoint, error) {
	var e Endpoint
	err := c.call(ctx, http.MethodGet, endpointPath(name), nil, &e)
	return e, err
}

// UpdateEndpoint replaces an endpoint's spec.
func (c *Client) UpdateEndpoint(ctx context.Context, spec EndpointSpec) (Endpoint, error) {
	var e Endpoint
	err := c.callJSON(ctx, http.MethodPut, endpointPath(spec.Name), spec, &e)
	return e, err
}

// DeleteEndpoint removes an endpoint.
func (c *Client) DeleteEndpoint(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, endpointPath(name), nil, nil)
}

// ListTasks lists the account's tasks that match q, newest first.
func (c *Client) ListTasks(ctx context.Context, q TaskQuery) ([]Task, error) {
	v := url.Values{}
	if q.Function != "" {
		v.Set("function", q.Function)
	}
	if q.State != "" {
		v.Set("state", string(q.State))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var list []Task
	err := c.call(ctx, http.MethodGet, "/v1/tasks"+encodeQuery(v), nil, &list)
	return list, err
}

// GetTask returns one task.
func (c *Client) GetTask(ctx context.Context, id string) (Task, error) {
	var task Task
	err := c.call(ctx, http.MethodGet, taskPath(id), nil, &task)
	return task, err
}

// StopTask stops a task that has not ended.
func (c *Client) StopTask(ctx context.Context, id string) (Task, error) {
	var task Task
	err := c.call(ctx, http.MethodPost, taskPath(id)+"/stop", nil, &task)
	return task, err
}

// ListTags lists the account's tags in use.
func (c *Client) ListTags(ctx context.Context) ([]Tag, error) {
	var list []Tag
	err := c.call(ctx, http.MethodGet, "/v1/tags", nil, &list)
	return list, err
}

func functionPath(name string) string { return "/v1/functions/" + url.PathEscape(name) }
func endpointPath(name string) string { return "/v1/endpoints/" + url.PathEscape(name) }
func taskPath(id string) string       { return "/v1/tasks/" + url.PathEscape(id) }

// listQueryString encodes q (tags in key order) and, if groupBy is not
// nil, the tag key to group by.
func listQueryString(q Query, groupBy *string) string {
	v := url.Values{}
	for _, k := range slices.Sorted(maps.Keys(q.Tags)) {
		v.Add("tag", k+"="+q.Tags[k])
	}
	if q.Search != "" {
		v.Set("search", q.Search)
	}
	if q.Sort != "" {
		v.Set("sort", q.Sort)
	}
	if groupBy != nil {
		v.Set("group_by", *groupBy)
	}
	return encodeQuery(v)
}

func encodeQuery(v url.Values) string {
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// callJSON sends in as a JSON body and decodes the JSON reply into out.
func (c *Client) callJSON(ctx context.Context, method, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("gateway: %s %s: encoding request: %w", method, path, err)
	}
	return c.call(ctx, method, path, bytes.NewReader(body), out)
}

// call does a management request and decodes a JSON reply into out
// (unless out is nil).
func (c *Client) call(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	c.authorize(req)
	return c.decode(req, out)
}

// decode sends req and decodes its JSON reply into out (unless out is
// nil). An error status is the gateway's error, a *CallError when it
// named a task.
func (c *Client) decode(req *http.Request, out any) error {
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return withTask(api.DecodeError(resp), resp.Header.Get(HeaderTask))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("gateway: %s %s: decoding reply: %w", req.Method, req.URL.RequestURI(), err)
	}
	return nil
}

func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("gateway: %s %s: %w", method, path, err)
	}
	return req, nil
}

// authorize sets the request's credentials from c's Auth.
func (c *Client) authorize(req *http.Request) {
	switch {
	case c.auth.Key != "":
		req.Header.Set("Authorization", "Bearer "+c.auth.Key)
	case c.auth.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.auth.Token)
		if c.auth.Account != "" {
			req.Header.Set(HeaderAccount, c.auth.Account)
		}
	}
}

func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway: cannot reach %s: %w", c.base, err)
	}
	return resp, nil
}
