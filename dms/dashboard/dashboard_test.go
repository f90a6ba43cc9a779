package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/testclock"
	"github.com/opendms/dms/types"
)

const token = "secret-token"

// fakeService is the little of a node the dashboard's pages read; the
// methods it does not override panic (the nil embedded interface).
type fakeService struct {
	api.Service
	mu   sync.Mutex
	jobs []api.Job
}

func (f *fakeService) Node(context.Context) (api.NodeInfo, error) {
	return api.NodeInfo{PeerID: "12D3KooWself", Registered: types.Resources{CPU: 4000, Memory: 1 << 30}}, nil
}

func (f *fakeService) Peers(context.Context) ([]api.Peer, error) {
	return []api.Peer{{ID: "12D3KooWpeerA"}, {ID: "12D3KooWpeerB"}}, nil
}

func (f *fakeService) ListJobs(context.Context) ([]api.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Job(nil), f.jobs...), nil
}

func (f *fakeService) addJob(j api.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, j)
}

func serve(t *testing.T, svc api.Service) (*httptest.Server, *testclock.Clock) {
	t.Helper()
	clk := testclock.New(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	d, err := New(Config{Service: svc, Token: token, Clock: clk.Now, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return srv, clk
}

// browser is an HTTP client that keeps cookies and does not follow
// redirects, so a test sees each one.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func login(t *testing.T, c *http.Client, base, tok string) *http.Response {
	t.Helper()
	resp, err := c.PostForm(base+"/ui/login", url.Values{"token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// newCode asks for a one-time code as `dms dashboard` does.
func newCode(t *testing.T, base, tok string) (codeReply, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/ui/codes", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c codeReply
	_ = json.NewDecoder(resp.Body).Decode(&c)
	return c, resp.StatusCode
}

func TestNoSessionGoesToLogin(t *testing.T) {
	srv, _ := serve(t, &fakeService{})
	c := browser(t)
	for _, p := range []string{"/ui/", "/ui/jobs", "/ui/peers", "/ui/flows/x"} {
		resp, _ := get(t, c, srv.URL+p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
			t.Errorf("GET %s without a session: %d to %q, want 303 to /ui/login", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp, _ := get(t, c, srv.URL+"/ui/events?page=jobs"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("events without a session: %d, want 401", resp.StatusCode)
	}
	// A forged cookie is no session.
	u, _ := url.Parse(srv.URL + "/ui/")
	c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: "forged", Path: "/ui/"}})
	if resp, _ := get(t, c, srv.URL+"/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a forged cookie: %d, want 303", resp.StatusCode)
	}
}

func TestLoginWithToken(t *testing.T) {
	srv, _ := serve(t, &fakeService{})
	c := browser(t)
	for _, bad := range []string{"", "wrong", token + "x", strings.ToUpper(token)} {
		if resp := login(t, c, srv.URL, bad); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
			t.Errorf("login with %q: %d, cookies %v; want 401 and none", bad, resp.StatusCode, resp.Cookies())
		}
	}
	resp := login(t, c, srv.URL, token)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login: %d to %q, want 303 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookie := resp.Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/ui/" || strings.Contains(cookie.Value, token) {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/, no token", cookie)
	}
	// Its life is counted on the browser's clock: the node's test clock
	// stands on 2026-12-04, and an Expires from it would be past already.
	if cookie.MaxAge != int(SessionTTL/time.Second) || !cookie.Expires.IsZero() {
		t.Errorf("session cookie Max-Age %d, Expires %s: want Max-Age %d and no Expires", cookie.MaxAge, cookie.Expires, int(SessionTTL/time.Second))
	}
	resp, body := get(t, c, srv.URL+"/ui/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "12D3KooWself") {
		t.Fatalf("node page after login: %d\n%s", resp.StatusCode, body)
	}
	// Logging out ends the session, on the server too.
	old := cookie.Value
	if resp, err := c.Post(srv.URL+"/ui/logout", "", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %v %v", resp, err)
	}
	c2 := browser(t)
	u, _ := url.Parse(srv.URL + "/ui/")
	c2.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: old, Path: "/ui/"}})
	if resp, _ := get(t, c2, srv.URL+"/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the cookie of a session logged out: %d, want 303 to login", resp.StatusCode)
	}
}

func TestOneTimeCode(t *testing.T) {
	srv, clk := serve(t, &fakeService{})
	if _, status := newCode(t, srv.URL, "wrong"); status != http.StatusUnauthorized {
		t.Errorf("a code asked with a wrong token: %d, want 401", status)
	}
	code, status := newCode(t, srv.URL, token)
	if status != http.StatusCreated || !strings.HasPrefix(code.Path, "/ui/login?code=") || strings.Contains(code.Path, token) {
		t.Fatalf("code: %d %+v", status, code)
	}
	c := browser(t)
	resp, _ := get(t, c, srv.URL+code.Path)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" || len(resp.Cookies()) != 1 {
		t.Fatalf("the link: %d to %q, cookies %v; want 303 to a clean /ui/ with a session", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	if resp, _ := get(t, c, srv.URL+"/ui/jobs"); resp.StatusCode != http.StatusOK {
		t.Errorf("jobs with the link's session: %d", resp.StatusCode)
	}
	// Used once: never again, in another browser.
	if resp, _ := get(t, browser(t), srv.URL+code.Path); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("a code used again: %d, cookies %v; want 401, none", resp.StatusCode, resp.Cookies())
	}
	// Expired: refused.
	late, _ := newCode(t, srv.URL, token)
	clk.Add(CodeTTL)
	if resp, _ := get(t, browser(t), srv.URL+late.Path); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an expired code: %d, want 401", resp.StatusCode)
	}
	// And so is a session past its time.
	clk.Add(SessionTTL)
	if resp, _ := get(t, c, srv.URL+"/ui/jobs"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("an expired session: %d, want 303 to login", resp.StatusCode)
	}
}

func TestSecurityHeaders(t *testing.T) {
	srv, _ := serve(t, &fakeService{})
	c := browser(t)
	login(t, c, srv.URL, token)
	for _, p := range []string{"/ui/login", "/ui/", "/ui/static/app.js"} {
		resp, _ := get(t, c, srv.URL+p)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows inline code: %q", p, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", p, h)
		}
	}
}

func TestNamesAreEscaped(t *testing.T) {
	svc := &fakeService{}
	evil := `<script>alert(1)</script>`
	svc.addJob(api.Job{ID: "j1", Name: evil, State: types.JobRunning, Node: `"><img src=x onerror=alert(2)>`})
	srv, _ := serve(t, svc)
	c := browser(t)
	login(t, c, srv.URL, token)
	_, body := get(t, c, srv.URL+"/ui/jobs")
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img") {
		t.Fatalf("markup from the network reached the page:\n%s", body)
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the job's name is not shown escaped:\n%s", body)
	}
	if n := strings.Count(body, "<script"); n != 1 {
		t.Errorf("%d scripts on the page, want the dashboard's alone", n)
	}
}

// The event stream sends the page's live part, then again when it
// changes.
func TestEventsFollowChanges(t *testing.T) {
	svc := &fakeService{}
	srv, _ := serve(t, svc)
	c := browser(t)
	login(t, c, srv.URL, token)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ui/events?page=jobs", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("events: %d %q", resp.StatusCode, ct)
	}
	events := bufio.NewScanner(resp.Body)
	events.Buffer(nil, 1<<20)
	next := func() string {
		for events.Scan() {
			if data, ok := strings.CutPrefix(events.Text(), "data: "); ok {
				var ev struct{ HTML string }
				if err := json.Unmarshal([]byte(data), &ev); err != nil {
					t.Fatal(err)
				}
				return ev.HTML
			}
		}
		t.Fatalf("the stream ended: %v", events.Err())
		return ""
	}
	if first := next(); !strings.Contains(first, "No job submitted") {
		t.Fatalf("first event: %s", first)
	}
	svc.addJob(api.Job{ID: "job-1", Name: "late", State: types.JobCompleted})
	if second := next(); !strings.Contains(second, `data-job="job-1"`) {
		t.Fatalf("second event: %s", second)
	}
}

// Link is what `dms dashboard` prints: a link that logs in once.
func TestLink(t *testing.T) {
	srv, _ := serve(t, &fakeService{})
	addr := strings.TrimPrefix(srv.URL, "http://")
	if _, _, err := Link(context.Background(), api.Endpoint{Addr: addr, Token: "wrong"}); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("Link with a wrong token: %v, want ErrUnauthorized", err)
	}
	link, exp, err := Link(context.Background(), api.Endpoint{Addr: addr, Token: token})
	if err != nil || !strings.HasPrefix(link, srv.URL+"/ui/login?code=") || exp.IsZero() {
		t.Fatalf("Link = %q, %v, %v", link, exp, err)
	}
	if resp, _ := get(t, browser(t), link); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the link: %d, want 303", resp.StatusCode)
	}
	if got := linkHost("0.0.0.0:9000"); got != "localhost:9000" {
		t.Errorf("linkHost(0.0.0.0:9000) = %s", got)
	}
}

// A ledger bar's segments follow each other and never pass its end.
func TestDimBar(t *testing.T) {
	str := func(v int64) string { return fmt.Sprint(v) }
	for _, tc := range []struct {
		reg, locked, held, avail int64
		want                     [5]float64 // LockedW, HeldX, HeldW, AvailX, AvailW
	}{
		{4000, 1000, 500, 2500, [5]float64{25, 25, 12.5, 37.5, 62.5}},
		{0, 0, 0, 0, [5]float64{}},
		{1000, 1500, 0, 0, [5]float64{100, 100, 0, 100, 0}}, // the offer lowered under what is locked
		{3, 1, 1, 1, [5]float64{33.3, 33.3, 33.3, 66.6, 33.3}},
	} {
		d := newDim("x", tc.reg, tc.locked, tc.held, tc.avail, str)
		if got := [5]float64{d.LockedW, d.HeldX, d.HeldW, d.AvailX, d.AvailW}; got != tc.want {
			t.Errorf("newDim(%d, %d, %d, %d) = %v, want %v", tc.reg, tc.locked, tc.held, tc.avail, got, tc.want)
		}
	}
}
