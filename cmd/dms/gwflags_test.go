package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFunctionEndpointTaskTagFlagErrors runs gateway commands whose flags are wrong: each
// fails with exit 1 and a message that says what to pass, before any
// request (the gateway URL listens nowhere).
func TestFunctionEndpointTaskTagFlagErrors(t *testing.T) {
	t.Setenv(envAPIKey, "")
	t.Setenv(envGateway, "")
	gw := []string{"--gateway", "http://127.0.0.1:1", "--key", "k"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"FunctionNoActor", []string{"function", "list"}, "say who acts: --account NAME"},
		{"TaskNoActor", []string{"task", "list"}, "say who acts: --account NAME"},
		{"EndpointBothActors", []string{"endpoint", "list", "--account", "alice", "--key", "k"}, "either --account or --gateway URL --key KEY, not both"},
		{"TagKeyWithoutGateway", []string{"tag", "list", "--key", "k"}, "--key needs the gateway's URL"},
		{"BadGatewayURL", []string{"function", "list", "--gateway", "gw:8080", "--key", "k"}, `--gateway "gw:8080": want a URL`},
		{"AccountWithoutDaemon", []string{"function", "list", "--account", "alice", "--home", t.TempDir()}, "no running daemon"},
		{"BadTag", append([]string{"function", "list", "--tag", "team"}, gw...), `--tag "team": want KEY=VALUE`},
		{"BadTagEmptyKey", append([]string{"endpoint", "create", "e", "--function", "f", "--tag", "=x"}, gw...), `--tag "=x": want KEY=VALUE`},
		{"MissingDataFile", append([]string{"function", "invoke", "echo", "--data", "@/no/such/file"}, gw...), "--data: open /no/such/file"},
		{"BadHeader", append([]string{"function", "invoke", "echo", "-H", "NoColon"}, gw...), `--header "NoColon": want 'Name: value'`},
		{"BadResources", append([]string{"function", "deploy", "f", "--module", "m", "--resources", "cpu=1,ram=2"}, gw...), `--resources "ram=2": unknown resource "ram"`},
		{"BadCPU", append([]string{"function", "deploy", "f", "--module", "m", "--cpu", "lots"}, gw...), "--cpu: "},
		{"BadTimeout", append([]string{"function", "deploy", "f", "--module", "m", "--timeout", "soon"}, gw...), "--timeout: "},
		{"BadEnv", append([]string{"function", "deploy", "f", "--module", "m", "--env", "X"}, gw...), `--env "X": want KEY=VALUE`},
		{"MissingModule", append([]string{"function", "deploy", "f", "--module", "/no/such.wasm"}, gw...), "--module /no/such.wasm: no such file, and not a CID"},
		{"BadRevision", append([]string{"function", "default", "f", "two"}, gw...), `revision "two": want a revision number`},
		{"TagNoPairs", append([]string{"function", "tag", "f"}, gw...), "takes NAME and at least one KEY=VALUE"},
		{"EndpointNoFunction", append([]string{"endpoint", "create", "e"}, gw...), "endpoint create needs --function F"},
		{"RevokeOneArg", []string{"account", "key", "revoke", "alice"}, "takes ACCOUNT KEYID, got 1 argument(s)"},
		{"CAMissing", []string{"tag", "list", "--gateway", "https://127.0.0.1:1", "--key", "k", "--ca", "/no/ca.pem"}, "--ca: open /no/ca.pem"},
		{"CANotPEM", []string{"tag", "list", "--gateway", "https://127.0.0.1:1", "--key", "k", "--ca", notPEM(t)}, "no PEM certificate in it"},
		{"PeersWithoutGroup", []string{"run", "--home", t.TempDir(), "--gateway-peers", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"}, "--gateway-peers and --gateway-join need --gateway-group NAME"},
		{"JoinWithoutGroup", []string{"run", "--home", t.TempDir(), "--gateway-join"}, "need --gateway-group NAME"},
		{"IdleThresholdWithoutIdleOnly", []string{"run", "--home", t.TempDir(), "--idle-threshold", "40%"}, "--idle-threshold and --idle-period need --idle-only"},
		{"BadIdleThreshold", []string{"run", "--home", t.TempDir(), "--idle-only", "--idle-threshold", "0.4"}, `offer.idle.threshold: "0.4" is not a share of the host's CPU`},
		{"BadMetricsAddress", []string{"run", "--home", t.TempDir(), "--metrics", "9464"}, `bad metrics address "9464"`},
		{"BadMetricsPort", []string{"run", "--home", t.TempDir(), "--metrics", ":metrics"}, `port "metrics" is not a number from 0 to 65535`},
		{"GroupStatusWithoutDaemon", []string{"gateway", "status", "--home", t.TempDir()}, "no running daemon"},
		{"GroupAddNoArg", []string{"gateway", "add"}, "MULTIADDR|PEERID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != 1 || out != "" || !strings.HasPrefix(errOut, "dms: ") || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, tt.want)
			}
		})
	}
}

func notPEM(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTagListEnvironment takes the key and the URL from the environment:
// the command gets as far as the (absent) gateway.
func TestTagListEnvironment(t *testing.T) {
	t.Setenv(envAPIKey, "k")
	t.Setenv(envGateway, "http://127.0.0.1:1")
	code, _, errOut := runCLI(t, "tag", "list")
	if code != 1 || strings.Contains(errOut, "say who acts") || strings.Contains(errOut, "--key needs") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestTagMerge(t *testing.T) {
	old := map[string]string{"team": "a", "env": "prod"}
	got, err := mergeTags(old, []string{"team=b", "env=", "tier=1"}, false)
	if err != nil || formatTags(got) != "team=b tier=1" || formatTags(old) != "env=prod team=a" {
		t.Fatalf("merge: %v %v (old now %v)", got, err, old)
	}
	got, err = mergeTags(old, []string{"tier=1"}, true)
	if err != nil || formatTags(got) != "tier=1" {
		t.Fatalf("replace: %v %v", got, err)
	}
}

func TestFunctionDeployResources(t *testing.T) {
	r, err := parseResources("cpu=500m, memory=64MiB,disk=1GiB,gpus=1")
	if err != nil || r.CPU != 500 || r.Memory != 64<<20 || r.Disk != 1<<30 || r.GPUs != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"cpu", "cpu=x", "memory=lots", "gpus=1.5", "ram=1"} {
		if _, err := parseResources(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
