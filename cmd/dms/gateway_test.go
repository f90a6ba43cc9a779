package main

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendms/dms/dms/gateway"
)

// asKey runs a command against url with an API key.
func asKey(t *testing.T, url, key string, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, append(args, "--gateway", url, "--key", key)...)
}

// ok runs a command that must succeed with --output json and decodes its
// stdout into a T.
func ok[T any](t *testing.T, url, key string, args ...string) T {
	t.Helper()
	code, out, errOut := asKey(t, url, key, append(args, "-o", "json")...)
	var v T
	if code != 0 {
		t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v: %v in %q", args, err, out)
	}
	return v
}

// writeModule writes a module file and returns its path.
func writeModule(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "echo.wasm")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAccountCommands(t *testing.T) {
	_, url, home := newFakeGateway(t)
	code, out, errOut := runCLI(t, "account", "create", "alice", "--home", home, "-o", "json")
	var made struct {
		Account gateway.Account `json:"account"`
		Key     gateway.NewKey  `json:"key"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &made) != nil || made.Account.Name != "alice" || made.Key.Secret == "" {
		t.Fatalf("create: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "not shown again") {
		t.Fatalf("create: no warning on stderr: %q", errOut)
	}
	code, out, _ = runCLI(t, "account", "key", "add", "alice", "--home", home)
	if code != 0 || !strings.Contains(out, "api key:") || !strings.Contains(out, "dms_secret_") {
		t.Fatalf("key add: exit %d, stdout %q", code, out)
	}
	if code, out, _ = runCLI(t, "account", "key", "revoke", "alice", made.Key.ID, "--home", home); code != 0 || out != "revoked key "+made.Key.ID+" of account alice\n" {
		t.Fatalf("revoke: exit %d, stdout %q", code, out)
	}
	code, out, _ = runCLI(t, "account", "key", "list", "alice", "--home", home)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || strings.HasSuffix(lines[1], " -") {
		t.Fatalf("key list: exit %d, stdout:\n%s", code, out)
	}
	if code, out, _ = runCLI(t, "account", "show", "alice", "--home", home); code != 0 || !strings.Contains(out, "keys:     1\n") {
		t.Fatalf("show: exit %d, stdout:\n%s", code, out)
	}
	if code, _, errOut = asKey(t, url, made.Key.Secret, "function", "list"); code != 1 || errOut != "dms: the API key was refused (revoked or wrong)\n" {
		t.Fatalf("revoked key: exit %d, stderr %q", code, errOut)
	}
}

func TestAccountUnknown(t *testing.T) {
	_, _, home := newFakeGateway(t)
	for _, args := range [][]string{
		{"account", "show", "bob"},
		{"function", "list", "--account", "bob"},
	} {
		code, _, errOut := runCLI(t, append(args, "--home", home)...)
		if code != 1 || !strings.Contains(errOut, `no account "bob"`) {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

func TestFunctionDeployAndManage(t *testing.T) {
	g, url, home := newFakeGateway(t)
	key := g.addAccount(t, "alice")
	module := writeModule(t, "\x00asm v1")
	rev := ok[gateway.Revision](t, url, key, "function", "deploy", "echo", "--module", module,
		"--resources", "cpu=500m,memory=64MiB", "--memory", "128MiB", "--timeout", "30s", "--max-body", "1MiB",
		"--env", "GREETING=hi", "--arg", "-v", "--tag", "team=web")
	if rev.Number != 1 || rev.Resources.CPU != 500 || rev.Resources.Memory != 128<<20 || rev.MaxBody != 1<<20 ||
		rev.Env["GREETING"] != "hi" || len(rev.Args) != 1 || rev.Executor != "wasm" {
		t.Fatalf("revision 1: %+v", rev)
	}
	// The module is now a CID the gateway holds: deploy it by CID, not as the default.
	code, out, errOut := asKey(t, url, key, "function", "deploy", "echo", "--module", rev.Module, "--no-default")
	if code != 0 || out != "deployed echo revision 2 (the default revision is unchanged)\n" {
		t.Fatalf("deploy by CID: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if f := ok[gateway.Function](t, url, key, "function", "default", "echo", "2"); f.DefaultRevision != 2 || f.Tags["team"] != "web" {
		t.Fatalf("default: %+v", f)
	}
	// The same through the local daemon, acting as the account.
	code, out, _ = runCLI(t, "function", "revisions", "echo", "--account", "alice", "--home", home)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "REV") {
		t.Fatalf("revisions: exit %d, stdout:\n%s", code, out)
	}
	if code, out, _ = asKey(t, url, key, "function", "delete", "echo"); code != 0 || out != "deleted function echo\n" {
		t.Fatalf("delete: exit %d, stdout %q", code, out)
	}
	if code, _, errOut = asKey(t, url, key, "function", "show", "echo"); code != 1 || !strings.Contains(errOut, `no function "echo"`) {
		t.Fatalf("show deleted: exit %d, stderr %q", code, errOut)
	}
}

func TestFunctionDeployProblems(t *testing.T) {
	g, url, _ := newFakeGateway(t)
	key := g.addAccount(t, "alice")
	code, out, errOut := asKey(t, url, key, "function", "deploy", "echo", "--executor", "jvm",
		"--module", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	want := "dms: deploy echo: invalid deploy:\n" +
		"  module: no module \"bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy\" in the gateway\n" +
		"  executor: \"jvm\": want wasm or docker\n"
	if code != 1 || out != "" || errOut != want {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
	}
}

// deployed makes an account with functions, each with tags, and returns
// its key.
func deployed(t *testing.T, g *fakeGateway, url string, functions map[string][]string) string {
	t.Helper()
	key := g.addAccount(t, "alice")
	module := writeModule(t, "\x00asm")
	for name, tags := range functions {
		args := []string{"function", "deploy", name, "--module", module}
		for _, tag := range tags {
			args = append(args, "--tag", tag)
		}
		if code, _, errOut := asKey(t, url, key, args...); code != 0 {
			t.Fatalf("deploy %s: %s", name, errOut)
		}
	}
	return key
}

func TestFunctionTagAndList(t *testing.T) {
	g, url, _ := newFakeGateway(t)
	key := deployed(t, g, url, map[string][]string{"api": {"team=web", "env=prod"}, "batch": {"team=data"}, "cron": nil})
	f := ok[gateway.Function](t, url, key, "function", "tag", "api", "env=", "tier=1")
	if formatTags(f.Tags) != "team=web tier=1" {
		t.Fatalf("merge: %v", f.Tags)
	}
	if f = ok[gateway.Function](t, url, key, "function", "tag", "api", "owner=ann", "--replace"); formatTags(f.Tags) != "owner=ann" {
		t.Fatalf("replace: %v", f.Tags)
	}
	list := ok[[]gateway.Function](t, url, key, "function", "list", "--tag", "team=data")
	if len(list) != 1 || list[0].Name != "batch" {
		t.Fatalf("list --tag team=data: %+v", list)
	}
	code, out, _ := asKey(t, url, key, "function", "list", "--group-by", "team")
	if code != 0 || !strings.HasPrefix(out, "team=data\nNAME") || !strings.Contains(out, "\n\nteam unset\nNAME") {
		t.Fatalf("group-by: exit %d, stdout:\n%s", code, out)
	}
	groups := ok[[]gateway.Group[gateway.Function]](t, url, key, "function", "list", "--group-by", "team")
	if len(groups) != 2 || groups[0].Value != "data" || len(groups[1].Items) != 2 {
		t.Fatalf("group-by json: %+v", groups)
	}
	tags := ok[[]gateway.Tag](t, url, key, "tag", "list")
	if len(tags) != 2 || tags[0] != (gateway.Tag{Key: "owner", Value: "ann", Functions: 1}) {
		t.Fatalf("tag list: %+v", tags)
	}
}

func TestFunctionInvoke(t *testing.T) {
	g, url, _ := newFakeGateway(t)
	key := deployed(t, g, url, map[string][]string{"echo": nil})
	data := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(data, []byte("from a file\x00\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := asKey(t, url, key, "function", "invoke", "echo", "--data", "@"+data, "--path", "a/b", "--query", "x=1")
	if code != 0 || out != "POST /a/b?x=1\nfrom a file\x00\n" || errOut != "" {
		t.Fatalf("invoke: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = asKey(t, url, key, "function", "invoke", "echo", "-X", "put", "-d", "hi", "-H", "X-A: 1", "--include")
	if code != 0 || !strings.HasPrefix(out, "Status: 200 OK\n") || !strings.Contains(out, "\nContent-Type: text/plain\n") || !strings.HasSuffix(out, "\n\nPUT ?\nhi") {
		t.Fatalf("--include: exit %d, stdout %q", code, out)
	}
	if h := g.lastCall().Header; h.Get("X-A") != "1" {
		t.Fatalf("--header X-A: 1 did not reach the function: %v", h)
	}
	code, out, errOut = asKey(t, url, key, "function", "invoke", "echo", "--query", "status=404")
	if code != 1 || out != "GET ?status=404\n" || !strings.HasPrefix(errOut, "dms: function echo answered 404 Not Found (task t") {
		t.Fatalf("404: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if resp := ok[gateway.Response](t, url, key, "function", "invoke", "echo", "--rev", "1"); resp.Status != 200 || string(resp.Body) != "GET ?\n" || resp.Task == "" {
		t.Fatalf("json: %+v", resp)
	}
	if code, _, errOut = asKey(t, url, key, "function", "invoke", "nope"); code != 1 || !strings.Contains(errOut, `no function "nope"`) {
		t.Fatalf("unknown function: exit %d, stderr %q", code, errOut)
	}
}

func TestTaskCommands(t *testing.T) {
	g, url, _ := newFakeGateway(t)
	key := deployed(t, g, url, map[string][]string{"echo": nil})
	code, id, errOut := asKey(t, url, key, "function", "invoke", "echo", "--async", "-d", "later")
	if id = strings.TrimSpace(id); code != 0 || !strings.HasPrefix(id, "t") {
		t.Fatalf("async: exit %d, stdout %q, stderr %q", code, id, errOut)
	}
	if code, out, _ := asKey(t, url, key, "task", "result", id); code != 0 || out != "POST ?\nlater" {
		t.Fatalf("result: exit %d, stdout %q", code, out)
	}
	g.accounts["alice"].addTask(gateway.Task{ID: "t99", Function: "echo", Revision: 1, State: gateway.TaskRunning})
	if list := ok[[]gateway.Task](t, url, key, "task", "list", "--state", "running", "--function", "echo"); len(list) != 1 || list[0].ID != "t99" {
		t.Fatalf("list --state running: %+v", list)
	}
	if code, _, errOut := asKey(t, url, key, "task", "result", "t99"); code != 1 || !strings.Contains(errOut, "has no result") {
		t.Fatalf("result of a running task: exit %d, stderr %q", code, errOut)
	}
	if task := ok[gateway.Task](t, url, key, "task", "stop", "t99"); task.State != gateway.TaskStopped {
		t.Fatalf("stop: %+v", task)
	}
	code, out, _ := asKey(t, url, key, "task", "show", "t99")
	if code != 0 || !strings.Contains(out, "state:      stopped\n") || !strings.Contains(out, "reason:     stopped by its account\n") {
		t.Fatalf("show: exit %d, stdout:\n%s", code, out)
	}
	if list := ok[[]gateway.Task](t, url, key, "task", "list", "--limit", "1"); len(list) != 1 {
		t.Fatalf("list --limit 1: %+v", list)
	}
}

func TestEndpointCommands(t *testing.T) {
	g, url, _ := newFakeGateway(t)
	key := deployed(t, g, url, map[string][]string{"echo": nil})
	e := ok[gateway.Endpoint](t, url, key, "endpoint", "create", "office", "--function", "echo",
		"--allow-ip", "10.0.0.0/8", "--window", "Mon-Fri 08:00-18:00 Europe/Berlin", "--daily-quota", "5", "--tag", "team=web")
	if e.Path != "/e/office/" || e.Auth != "none" || len(e.AllowIPs) != 1 || len(e.Windows) != 1 || *e.Remaining != 5 {
		t.Fatalf("create: %+v", e)
	}
	e = ok[gateway.Endpoint](t, url, key, "endpoint", "update", "office", "--allow-ip", "192.0.2.1", "--clear-windows", "--auth", "key", "--tag", "team=")
	if len(e.AllowIPs) != 2 || len(e.Windows) != 0 || e.Auth != "key" || e.DailyQuota != 5 || e.Function != "echo" || len(e.Tags) != 0 {
		t.Fatalf("update: %+v", e)
	}
	code, out, _ := asKey(t, url, key, "endpoint", "show", "office")
	for _, want := range []string{"path:         /e/office/\n", "allow ips:    10.0.0.0/8\n              192.0.2.1\n", "windows:      always open\n", "remaining:    5\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("show: exit %d, no %q in:\n%s", code, want, out)
		}
	}
	if list := ok[[]gateway.Endpoint](t, url, key, "endpoint", "list", "--search", "off"); len(list) != 1 {
		t.Fatalf("list: %+v", list)
	}
	if code, out, _ = asKey(t, url, key, "endpoint", "delete", "office"); code != 0 || out != "deleted endpoint office\n" {
		t.Fatalf("delete: exit %d, stdout %q", code, out)
	}
}

// TestEndpointBadWindow passes a window the CLI does not check: the
// gateway's field problem is printed.
func TestEndpointBadWindow(t *testing.T) {
	g, url, _ := newFakeGateway(t)
	key := deployed(t, g, url, map[string][]string{"echo": nil})
	code, out, errOut := asKey(t, url, key, "endpoint", "create", "office", "--function", "echo", "--window", "Mon-Fri 8-18", "--window", "Sat 10:00-12:00 UTC")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "dms: endpoint office: invalid endpoint:\n  windows[0]: ") || strings.Count(errOut, "\n") != 2 {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
}

// TestTagListOverTLS trusts a gateway's self-signed certificate with --ca.
func TestTagListOverTLS(t *testing.T) {
	g := &fakeGateway{accounts: map[string]*fakeAccount{}, keys: map[string]gateway.Key{}, modules: map[string]bool{}}
	key := g.addAccount(t, "alice")
	srv := httptest.NewUnstartedServer(gateway.NewHandler(g, gateway.HandlerConfig{}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := asKey(t, srv.URL, key, "tag", "list"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Fatalf("without --ca: exit %d, stderr %q", code, errOut)
	}
	if code, out, errOut := asKey(t, srv.URL, key, "tag", "list", "--ca", ca); code != 0 || out != "KEY  VALUE  FUNCTIONS  ENDPOINTS\n" {
		t.Fatalf("with --ca: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
