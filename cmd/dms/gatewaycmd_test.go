package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/gateway"
)

// TestGatewayCommands grows and shrinks a group with the CLI against real
// in-process nodes: dms gateway add a gateway started with --gateway-join,
// see it in dms gateway status, remove it.
func TestGatewayCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := t.TempDir()
	founder, err := startNode(ctx, filepath.Join(root, "a"), dms.WithAPI("127.0.0.1:0"), dms.WithCompute(false), dms.WithGatewayGroup("crew", nil, false))
	if err != nil {
		t.Fatal(err)
	}
	defer founder.Close()
	info, err := founder.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joiner, err := startNode(ctx, filepath.Join(root, "b"), dms.WithCompute(false), dms.WithBootstrap(info.Addrs[0]),
		dms.WithGatewayGroup("crew", []string{info.Addrs[0]}, true))
	if err != nil {
		t.Fatal(err)
	}
	defer joiner.Close()
	jinfo, err := joiner.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, "a")
	status := func() gateway.GroupStatus {
		t.Helper()
		code, out, errOut := runCLI(t, "gateway", "status", "--home", home, "--output", "json")
		var s gateway.GroupStatus
		if code != 0 || json.Unmarshal([]byte(out), &s) != nil {
			t.Fatalf("gateway status: exit %d, %s %s", code, out, errOut)
		}
		return s
	}
	if s := status(); s.Name != "crew" || len(s.Members) != 1 || s.Self != info.PeerID {
		t.Fatalf("a group of one: %+v", s)
	}
	if code, out, errOut := runCLI(t, "gateway", "add", jinfo.Addrs[0], "--home", home); code != 0 || !strings.Contains(out, "added "+jinfo.PeerID) {
		t.Fatalf("gateway add: exit %d, %q %q", code, out, errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s := status(); len(s.Members) != 2 || s.Leader == ""; s = status() {
		if time.Now().After(deadline) {
			t.Fatalf("the joiner not in the group: %+v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, out, errOut := runCLI(t, "gateway", "status", "--home", home); code != 0 || !strings.Contains(out, jinfo.PeerID) || !strings.Contains(out, "MEMBER") {
		t.Fatalf("gateway status as a table: exit %d, %q %q", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "gateway", "remove", "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp", "--home", home); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("gateway remove of a stranger: exit %d, %q", code, errOut)
	}
	if code, out, errOut := runCLI(t, "gateway", "remove", jinfo.PeerID, "--home", home); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("gateway remove: exit %d, %q %q", code, out, errOut)
	}
	if s := status(); len(s.Members) != 1 {
		t.Fatalf("after remove: %+v", s)
	}
}
