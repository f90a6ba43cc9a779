package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/dashboard"
)

// TestDashboardLink prints the one-time link of a daemon's dashboard: it
// logs a browser in once.
func TestDashboardLink(t *testing.T) {
	tok, err := api.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	dash, err := dashboard.New(dashboard.Config{Service: newFakeService(), Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(dash)
	t.Cleanup(srv.Close)
	home := t.TempDir()
	if err := api.WriteEndpoint(home, api.Endpoint{Addr: srv.Listener.Addr().String(), Token: tok}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "dashboard", "--home", home)
	link := regexp.MustCompile(`http://\S+/ui/login\?code=\S+`).FindString(out)
	if code != 0 || link == "" || strings.Contains(out, "code="+tok) || !strings.Contains(out, "api.json") {
		t.Fatalf("dms dashboard: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, want := range []int{http.StatusSeeOther, http.StatusUnauthorized} {
		resp, err := noFollow.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("the link, use %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	_, out, _ = runCLI(t, "dashboard", "-o", "json", "--home", home)
	var v struct {
		URL       string `json:"url"`
		ExpiresAt string `json:"expires_at"`
	}
	if json.Unmarshal([]byte(out), &v) != nil || !strings.Contains(v.URL, "/ui/login?code=") || v.ExpiresAt == "" {
		t.Errorf("dms dashboard -o json: %s", out)
	}
	if code, _, errOut := runCLI(t, "dashboard", "--home", t.TempDir()); code != 1 || !strings.Contains(errOut, "no running daemon") {
		t.Errorf("without a daemon: exit %d, %q", code, errOut)
	}
}
