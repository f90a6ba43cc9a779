package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
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

// The tests below run the commands against the shared real network (see
// gwnet_test.go), each as its own account.

func TestAccountCommands(t *testing.T) {
	n := sharedNet(t)
	code, out, errOut := runCLI(t, "account", "create", "alice", "--home", n.home, "-o", "json")
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
	code, out, _ = runCLI(t, "account", "key", "add", "alice", "--home", n.home)
	if code != 0 || !strings.Contains(out, "api key:") || !strings.Contains(out, "dms_") {
		t.Fatalf("key add: exit %d, stdout %q", code, out)
	}
	if code, out, _ = runCLI(t, "account", "key", "revoke", "alice", made.Key.ID, "--home", n.home); code != 0 || out != "revoked key "+made.Key.ID+" of account alice\n" {
		t.Fatalf("revoke: exit %d, stdout %q", code, out)
	}
	code, out, _ = runCLI(t, "account", "key", "list", "alice", "--home", n.home)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[1], made.Key.ID+" ") || strings.HasSuffix(lines[1], " -") || !strings.HasSuffix(lines[2], " -") {
		t.Fatalf("key list: exit %d, stdout:\n%s", code, out)
	}
	if code, out, _ = runCLI(t, "account", "show", "alice", "--home", n.home); code != 0 || !strings.Contains(out, "keys:       1\n") {
		t.Fatalf("show: exit %d, stdout:\n%s", code, out)
	}
	if code, _, errOut = asKey(t, n.url, made.Key.Secret, "function", "list"); code != 1 || errOut != "dms: the API key was refused (revoked or wrong)\n" {
		t.Fatalf("revoked key: exit %d, stderr %q", code, errOut)
	}
}

// TestAccountCreditCommands: the operator credits an account and sets
// its limit from the CLI; show and list print the credits; an AMOUNT that
// is not credits is refused before anything is sent.
func TestAccountCreditCommands(t *testing.T) {
	n := sharedNet(t)
	n.account(t, "payer")
	if code, out, errOut := runCLI(t, "account", "credit", "payer", "2.5", "--memo", "trial", "--home", n.home); code != 0 || !strings.Contains(out, "balance:    2.5\n") || !strings.Contains(out, "available:  2.5\n") {
		t.Fatalf("credit: exit %d, stdout:\n%s\nstderr %s", code, out, errOut)
	}
	code, out, errOut := runCLI(t, "account", "limit", "payer", "1", "--home", n.home, "-o", "json")
	var a gateway.Account
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil {
		t.Fatalf("limit: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if want := (gateway.Credits{Balance: 2500000, Limit: types.Credit, Available: 3500000}); a.Credits != want {
		t.Fatalf("limit: %+v, want %+v", a.Credits, want)
	}
	if code, out, _ := runCLI(t, "account", "list", "--home", n.home); code != 0 || !strings.Contains(out, "AVAILABLE") || !strings.Contains(out, " 3.5 ") {
		t.Fatalf("list: exit %d, stdout:\n%s", code, out)
	}
	for _, args := range [][]string{
		{"account", "credit", "payer", "1.0000001"},
		{"account", "credit", "payer", "lots"},
		{"account", "credit", "payer", "0"},
		{"account", "limit", "payer", "-1"},
		{"account", "credit", "payer"},
	} {
		if code, _, errOut := runCLI(t, append(args, "--home", n.home)...); code == 0 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// TestPayoutCommands: a payout run settles what is owed, so a second one
// right after makes no statement; the list prints CSV with its header. The
// shared network's warm-up calls leave receipts of their own, owed once
// countersigned (CI at 46b3cd8 ran this test after one was): the first run
// may settle them.
func TestPayoutCommands(t *testing.T) {
	n := sharedNet(t)
	code, out, errOut := runCLI(t, "payout", "run", "--home", n.home, "-o", "json")
	var first []json.RawMessage
	if code != 0 || json.Unmarshal([]byte(out), &first) != nil {
		t.Fatalf("payout run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "payout", "run", "--home", n.home, "-o", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("payout run again, nothing owed: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "payout", "list", "--csv", "--home", n.home); code != 0 || !strings.HasPrefix(out, "statement,provider,entry,receipt,job,name,at,amount\n") {
		t.Fatalf("payout list --csv: exit %d, stdout %q", code, out)
	}
}

func TestAccountUnknown(t *testing.T) {
	n := sharedNet(t)
	for _, args := range [][]string{
		{"account", "show", "bob"},
		{"function", "list", "--account", "bob"},
	} {
		code, _, errOut := runCLI(t, append(args, "--home", n.home)...)
		if code != 1 || !strings.Contains(errOut, `not found: account "bob"`) {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

func TestFunctionDeployAndManage(t *testing.T) {
	n := sharedNet(t)
	key := n.account(t, "deployer")
	rev := ok[gateway.Revision](t, n.url, key, "function", "deploy", "echo", "--module", n.echo,
		"--resources", "cpu=500m,memory=64MiB", "--memory", "128MiB", "--timeout", "30s", "--max-body", "1MiB",
		"--env", "GREETING=hi", "--arg", "-v", "--tag", "team=web")
	if rev.Number != 1 || rev.Resources.CPU != 500 || rev.Resources.Memory != 128<<20 || rev.MaxBody != 1<<20 ||
		rev.Env["GREETING"] != "hi" || len(rev.Args) != 1 || rev.Executor != "wasm" {
		t.Fatalf("revision 1: %+v", rev)
	}
	// The module is now a CID the gateway holds: deploy it by CID, not as the default.
	code, out, errOut := asKey(t, n.url, key, "function", "deploy", "echo", "--module", rev.Module, "--no-default")
	if code != 0 || out != "deployed echo revision 2 (the default revision is unchanged)\n" {
		t.Fatalf("deploy by CID: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if f := ok[gateway.Function](t, n.url, key, "function", "default", "echo", "2"); f.DefaultRevision != 2 || f.Tags["team"] != "web" {
		t.Fatalf("default: %+v", f)
	}
	// The same through the local daemon, acting as the account.
	code, out, _ = runCLI(t, "function", "revisions", "echo", "--account", "deployer", "--home", n.home)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "REV") {
		t.Fatalf("revisions: exit %d, stdout:\n%s", code, out)
	}
	if code, out, _ = asKey(t, n.url, key, "function", "delete", "echo"); code != 0 || out != "deleted function echo\n" {
		t.Fatalf("delete: exit %d, stdout %q", code, out)
	}
	if code, _, errOut = asKey(t, n.url, key, "function", "show", "echo"); code != 1 || !strings.Contains(errOut, `not found: function "echo"`) {
		t.Fatalf("show deleted: exit %d, stderr %q", code, errOut)
	}
}

// TestFunctionDeployProblems: the gateway names each bad field of a
// deploy; it looks for the module only when the rest is right.
func TestFunctionDeployProblems(t *testing.T) {
	n := sharedNet(t)
	key := n.account(t, "misdeployer")
	const nobodys = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	code, out, errOut := asKey(t, n.url, key, "function", "deploy", "echo", "--executor", "jvm", "--tag", "a b=c", "--module", nobodys)
	want := "dms: deploy echo: invalid deploy:\n" +
		"  executor: unknown executor \"jvm\" (known: wasm, docker)\n" +
		"  tags.a b: the key must be printable text without spaces, '=' or ','\n"
	if code != 1 || out != "" || errOut != want {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
	}
	code, out, errOut = asKey(t, n.url, key, "function", "deploy", "echo", "--module", nobodys)
	want = "dms: deploy echo: invalid deploy:\n  module: no blob " + nobodys + " on this node or the network: upload it first ("
	if code != 1 || out != "" || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "\n") != 2 {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s...", code, out, errOut, want)
	}
}

// deploy deploys module as function name, with tags.
func deploy(t *testing.T, url, key, name, module string, tags ...string) {
	t.Helper()
	args := []string{"function", "deploy", name, "--module", module}
	for _, tag := range tags {
		args = append(args, "--tag", tag)
	}
	if code, _, errOut := asKey(t, url, key, args...); code != 0 {
		t.Fatalf("deploy %s: %s", name, errOut)
	}
}

func TestFunctionTagAndList(t *testing.T) {
	n := sharedNet(t)
	key := n.account(t, "tagger")
	deploy(t, n.url, key, "api", n.echo, "team=web", "env=prod")
	deploy(t, n.url, key, "batch", n.echo, "team=data")
	deploy(t, n.url, key, "cron", n.echo)
	f := ok[gateway.Function](t, n.url, key, "function", "tag", "api", "env=", "tier=1")
	if formatTags(f.Tags) != "team=web tier=1" {
		t.Fatalf("merge: %v", f.Tags)
	}
	if f = ok[gateway.Function](t, n.url, key, "function", "tag", "api", "owner=ann", "--replace"); formatTags(f.Tags) != "owner=ann" {
		t.Fatalf("replace: %v", f.Tags)
	}
	list := ok[[]gateway.Function](t, n.url, key, "function", "list", "--tag", "team=data")
	if len(list) != 1 || list[0].Name != "batch" {
		t.Fatalf("list --tag team=data: %+v", list)
	}
	code, out, _ := asKey(t, n.url, key, "function", "list", "--group-by", "team")
	if code != 0 || !strings.HasPrefix(out, "team=data\nNAME") || !strings.Contains(out, "\n\nteam unset\nNAME") {
		t.Fatalf("group-by: exit %d, stdout:\n%s", code, out)
	}
	groups := ok[[]gateway.Group[gateway.Function]](t, n.url, key, "function", "list", "--group-by", "team")
	if len(groups) != 2 || groups[0].Value != "data" || len(groups[1].Items) != 2 {
		t.Fatalf("group-by json: %+v", groups)
	}
	tags := ok[[]gateway.Tag](t, n.url, key, "tag", "list")
	if len(tags) != 2 || tags[0] != (gateway.Tag{Key: "owner", Value: "ann", Functions: 1}) {
		t.Fatalf("tag list: %+v", tags)
	}
}

// TestFunctionInvoke calls examples/echo, which answers with the method,
// path, query and body it got, and examples/greet, which answers 400
// without a name.
func TestFunctionInvoke(t *testing.T) {
	n := sharedNet(t)
	key := n.account(t, "invoker")
	deploy(t, n.url, key, "echo", n.echo)
	deploy(t, n.url, key, "greet", n.greet)
	data := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(data, []byte("from a file\x00\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := asKey(t, n.url, key, "function", "invoke", "echo", "--data", "@"+data, "--path", "a/b", "--query", "x=1")
	if code != 0 || out != "method: POST\npath: /a/b\nquery: x=1\nbody: from a file\x00\n\n" || errOut != "" {
		t.Fatalf("invoke: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = asKey(t, n.url, key, "function", "invoke", "echo", "-X", "put", "-d", "hi", "-H", "X-A: 1", "--include")
	if code != 0 || !strings.HasPrefix(out, "Status: 200 OK\n") || !strings.Contains(out, "\nContent-Type: text/plain; charset=utf-8\n") ||
		!strings.HasSuffix(out, "\n\nmethod: PUT\npath: \nquery: \nbody: hi\n") {
		t.Fatalf("--include: exit %d, stdout %q", code, out)
	}
	code, out, errOut = asKey(t, n.url, key, "function", "invoke", "greet")
	if code != 1 || !strings.HasPrefix(out, `{"error":"name is required`) || !strings.HasPrefix(errOut, "dms: function greet answered 400 Bad Request (task ") {
		t.Fatalf("400: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if resp := ok[gateway.Response](t, n.url, key, "function", "invoke", "echo", "--rev", "1"); resp.Status != 200 ||
		string(resp.Body) != "method: GET\npath: \nquery: \nbody: \n" || resp.Task == "" {
		t.Fatalf("json: %+v", resp)
	}
	if code, _, errOut = asKey(t, n.url, key, "function", "invoke", "nope"); code != 1 || !strings.Contains(errOut, `not found: function "nope"`) {
		t.Fatalf("unknown function: exit %d, stderr %q", code, errOut)
	}
}

// taskState waits until task id is in one of states and returns it.
func taskState(t *testing.T, url, key, id string, states ...gateway.TaskState) gateway.Task {
	t.Helper()
	var task gateway.Task
	eventually(t, time.Minute, "task "+id+" to be "+fmt.Sprint(states), func() bool {
		task = ok[gateway.Task](t, url, key, "task", "show", id)
		return slices.Contains(states, task.State)
	})
	return task
}

// TestTaskCommands follows an async call of examples/echo to its result,
// and stops one of examples/sleep while it runs.
func TestTaskCommands(t *testing.T) {
	n := sharedNet(t)
	key := n.account(t, "tasker")
	deploy(t, n.url, key, "echo", n.echo)
	code, id, errOut := asKey(t, n.url, key, "function", "invoke", "echo", "--async", "-d", "later")
	if id = strings.TrimSpace(id); code != 0 || len(id) != 32 {
		t.Fatalf("async: exit %d, stdout %q, stderr %q", code, id, errOut)
	}
	taskState(t, n.url, key, id, gateway.TaskCompleted)
	if code, out, _ := asKey(t, n.url, key, "task", "result", id); code != 0 || out != "method: POST\npath: \nquery: \nbody: later\n" {
		t.Fatalf("result: exit %d, stdout %q", code, out)
	}

	if code, _, errOut := asKey(t, n.url, key, "function", "deploy", "sleep", "--module", "../../examples/sleep/sleep.wasm", "--arg", "60", "--timeout", "2m"); code != 0 {
		t.Fatalf("deploy sleep: %s", errOut)
	}
	code, long, errOut := asKey(t, n.url, key, "function", "invoke", "sleep", "--async")
	if long = strings.TrimSpace(long); code != 0 || long == "" {
		t.Fatalf("async sleep: exit %d, stdout %q, stderr %q", code, long, errOut)
	}
	taskState(t, n.url, key, long, gateway.TaskRunning)
	if list := ok[[]gateway.Task](t, n.url, key, "task", "list", "--state", "running", "--function", "sleep"); len(list) != 1 || list[0].ID != long {
		t.Fatalf("list --state running: %+v", list)
	}
	if code, _, errOut := asKey(t, n.url, key, "task", "result", long); code != 1 || !strings.Contains(errOut, "is running") {
		t.Fatalf("result of a running task: exit %d, stderr %q", code, errOut)
	}
	if task := ok[gateway.Task](t, n.url, key, "task", "stop", long); task.State != gateway.TaskStopped {
		t.Fatalf("stop: %+v", task)
	}
	code, out, _ := asKey(t, n.url, key, "task", "show", long)
	if code != 0 || !strings.Contains(out, "state:      stopped\n") || !strings.Contains(out, "reason:     stopped by its account\n") {
		t.Fatalf("show: exit %d, stdout:\n%s", code, out)
	}
	if list := ok[[]gateway.Task](t, n.url, key, "task", "list", "--limit", "1"); len(list) != 1 || list[0].ID != long {
		t.Fatalf("list --limit 1 (the newest): %+v", list)
	}
}

func TestEndpointCommands(t *testing.T) {
	n := sharedNet(t)
	key := n.account(t, "publisher")
	deploy(t, n.url, key, "echo", n.echo)
	e := ok[gateway.Endpoint](t, n.url, key, "endpoint", "create", "office", "--function", "echo",
		"--allow-ip", "10.0.0.0/8", "--window", "Mon-Fri 08:00-18:00 Europe/Berlin", "--daily-quota", "5", "--tag", "team=web")
	if e.Path != "/e/office/" || e.Auth != "none" || len(e.AllowIPs) != 1 || len(e.Windows) != 1 || e.Remaining == nil || *e.Remaining != 5 {
		t.Fatalf("create: %+v", e)
	}
	e = ok[gateway.Endpoint](t, n.url, key, "endpoint", "update", "office", "--allow-ip", "192.0.2.1", "--clear-windows", "--auth", "key", "--tag", "team=")
	if len(e.AllowIPs) != 2 || len(e.Windows) != 0 || e.Auth != "key" || e.DailyQuota != 5 || e.Function != "echo" || len(e.Tags) != 0 {
		t.Fatalf("update: %+v", e)
	}
	code, out, _ := asKey(t, n.url, key, "endpoint", "show", "office")
	for _, want := range []string{"path:         /e/office/\n", "allow ips:    10.0.0.0/8\n              192.0.2.1\n", "windows:      always open\n", "remaining:    5\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("show: exit %d, no %q in:\n%s", code, want, out)
		}
	}
	if list := ok[[]gateway.Endpoint](t, n.url, key, "endpoint", "list", "--search", "off"); len(list) != 1 {
		t.Fatalf("list: %+v", list)
	}
	if code, out, _ = asKey(t, n.url, key, "endpoint", "delete", "office"); code != 0 || out != "deleted endpoint office\n" {
		t.Fatalf("delete: exit %d, stdout %q", code, out)
	}
}

// TestEndpointBadWindow passes a window the CLI does not check: the
// gateway's field problem is printed.
func TestEndpointBadWindow(t *testing.T) {
	n := sharedNet(t)
	key := n.account(t, "windower")
	deploy(t, n.url, key, "echo", n.echo)
	code, out, errOut := asKey(t, n.url, key, "endpoint", "create", "office", "--function", "echo", "--window", "Mon-Fri 8-18", "--window", "Sat 10:00-12:00 UTC")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "dms: endpoint office: invalid endpoint:\n  windows[0]: ") || strings.Count(errOut, "\n") != 2 {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
}

// TestTagListOverTLS trusts a gateway's self-signed certificate with --ca.
// The gateway is a node of its own, serving HTTPS, with no peers: listing
// tags asks none.
func TestTagListOverTLS(t *testing.T) {
	t.Setenv(envAPIKey, "")
	t.Setenv(envGateway, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	cert, certKey, ca := selfSigned(t, dir)
	d, err := startNode(ctx, filepath.Join(dir, "gateway"), dms.WithCompute(false), dms.WithGatewayListen("127.0.0.1:0", cert, certKey))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, key, err := d.Gateway().CreateAccount(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	url := d.GatewayURL()
	if code, _, errOut := asKey(t, url, key.Secret, "tag", "list"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Fatalf("without --ca: exit %d, stderr %q", code, errOut)
	}
	if code, out, errOut := asKey(t, url, key.Secret, "tag", "list", "--ca", ca); code != 0 || out != "KEY  VALUE  FUNCTIONS  ENDPOINTS\n" {
		t.Fatalf("with --ca: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestFunctionScaleAndInstances: a deploy's scaling flags, `function
// scale` (only the flags given change; a count of 0 is refused, as is a
// scaling the gateway refuses, naming the field), `function instances`,
// and `invoke --idempotency-key` answering a repeated call without
// running it again.
func TestFunctionScaleAndInstances(t *testing.T) {
	n := sharedNet(t)
	key := n.account(t, "scaler")
	if code, _, errOut := asKey(t, n.url, key, "function", "deploy", "echo", "--module", n.echo, "--max-instances", "3", "--keep-alive", "1m"); code != 0 {
		t.Fatalf("deploy: %s", errOut)
	}
	f := ok[gateway.Function](t, n.url, key, "function", "scale", "echo", "--min-instances", "1")
	if want := (gateway.Scaling{MinInstances: 1, MaxInstances: 3, Concurrency: gateway.DefaultConcurrency, KeepAlive: jobs.Duration(time.Minute), MaxQueue: gateway.DefaultMaxQueue}); f.Scaling != want {
		t.Fatalf("scale: %+v, want %+v", f.Scaling, want)
	}
	if code, _, errOut := asKey(t, n.url, key, "function", "scale", "echo", "--max-instances", "0"); code != 1 || !strings.Contains(errOut, "--max-instances 0: want 1 or more") {
		t.Fatalf("--max-instances 0: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := asKey(t, n.url, key, "function", "scale", "echo", "--min-instances", "5"); code != 1 || !strings.Contains(errOut, "scaling.min_instances: 5 is over max_instances 3") {
		t.Fatalf("min over max: exit %d, stderr %q", code, errOut)
	}
	var list []gateway.Instance
	eventually(t, 30*time.Second, "the minimum instance", func() bool {
		list = ok[[]gateway.Instance](t, n.url, key, "function", "instances", "echo")
		return len(list) == 1
	})
	if list[0].Revision != 1 || list[0].Node == "" || list[0].Job == "" {
		t.Fatalf("instances: %+v", list)
	}
	first := ok[gateway.Response](t, n.url, key, "function", "invoke", "echo", "-d", "once", "--idempotency-key", "order-7")
	again := ok[gateway.Response](t, n.url, key, "function", "invoke", "echo", "-d", "twice", "--idempotency-key", "order-7")
	if first.Task == "" || again.Task != first.Task || string(again.Body) != string(first.Body) || !strings.Contains(string(first.Body), "body: once") {
		t.Fatalf("a call repeated with its key: %+v, then %+v", first, again)
	}
	if fn := ok[gateway.Function](t, n.url, key, "function", "show", "echo"); fn.Calls != 1 {
		t.Fatalf("%d calls counted, want the one that ran", fn.Calls)
	}
}

// TestInvoiceCommands: an admin lists an account's invoice periods, shows
// one as a table, CSV or HTML, and closes a month that has ended, once;
// a month not ended, a bad period or a missing flag is a message and exit 1.
func TestInvoiceCommands(t *testing.T) {
	n := sharedNet(t)
	n.account(t, "billed")
	if code, _, errOut := runCLI(t, "account", "credit", "billed", "2.5", "--memo", "trial", "--home", n.home); code != 0 {
		t.Fatalf("credit: exit %d, stderr %q", code, errOut)
	}
	now := time.Now().UTC()
	period := now.Format("2006-01")
	last := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).Add(-time.Hour).Format("2006-01")
	run := func(args ...string) (int, string, string) {
		return runCLI(t, append(append([]string{"invoice"}, args...), "--home", n.home)...)
	}
	if code, out, errOut := run("list", "--account", "billed"); code != 0 || !strings.Contains(out, period) || !strings.Contains(out, "2.5") || !strings.Contains(out, "open") {
		t.Fatalf("list: exit %d, stdout:\n%s\nstderr %q", code, out, errOut)
	}
	if code, out, errOut := run("show", "--account", "billed", "--period", period); code != 0 || !strings.Contains(out, "credited:  2.5\n") || !strings.Contains(out, "trial") {
		t.Fatalf("show: exit %d, stdout:\n%s\nstderr %q", code, out, errOut)
	}
	if code, out, errOut := run("show", "--account", "billed", "--period", period, "--format", "csv"); code != 0 || !strings.HasSuffix(out, "\ntotal,0,0,0.000,,0,\n") {
		t.Fatalf("show as CSV: exit %d, stdout:\n%s\nstderr %q", code, out, errOut)
	}
	if code, out, _ := run("show", "--account", "billed", "--period", period, "--format", "html"); code != 0 || !strings.Contains(out, "<strong>billed</strong>") {
		t.Fatalf("show as HTML: exit %d, stdout:\n%s", code, out)
	}
	if code, out, errOut := run("close", "--account", "billed", "--period", last); code != 0 || !strings.Contains(out, "status:    closed\n") {
		t.Fatalf("close %s: exit %d, stdout:\n%s\nstderr %q", last, code, out, errOut)
	}
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"close", "--account", "billed", "--period", last}, "closed at"},
		{[]string{"close", "--account", "billed", "--period", period}, "close it after"},
		{[]string{"show", "--account", "billed", "--period", "2026-13"}, "YYYY-MM"},
		{[]string{"show", "--period", period}, "--account is required"},
		{[]string{"show", "--account", "billed", "--period", period, "--format", "pdf"}, "want json, csv or html"},
	} {
		if code, _, errOut := run(c.args...); code != 1 || !strings.Contains(errOut, c.says) {
			t.Errorf("%v: exit %d, stderr %q, want it to say %q", c.args, code, errOut, c.says)
		}
	}
}
