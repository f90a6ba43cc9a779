package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/types"
)

// The gateway group's compose file, deploy/docker-compose.gateways.yml,
// run through `up.sh --gateways` as a user would: three gateways found a
// group, two providers join; an account made on gw0 and a function
// deployed through gw0 answer through each gateway's published port.
// Needs Docker and docker-compose, as the cluster test.
func TestComposeGatewayGroup(t *testing.T) {
	requireCompose(t)
	begin := time.Now()
	echo := buildWasmExample(t, "echo")
	ports := make([]int, groupGateways)
	env := make([]string, groupGateways)
	for i := range ports {
		ports[i] = freeLoopbackPort(t)
		env[i] = fmt.Sprintf("DMS_GW_PORT_%d=%d", i, ports[i])
	}
	c := startCompose(t, gatewaysCompose, env...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := c.client()
	eventually(t, 60*time.Second, "gw0 to see the four other nodes", func() bool {
		peers, err := cl.Peers(ctx)
		return err == nil && len(peers) >= 4
	})
	e, err := api.ReadEndpoint(filepath.Join(c.homes, "client"))
	if err != nil {
		t.Fatal(err)
	}
	var s gateway.GroupStatus
	eventually(t, 60*time.Second, "a group of three live members with a leader", func() bool {
		s, err = adminGroup(ctx, e)
		alive := 0
		for _, m := range s.Members {
			if m.Alive {
				alive++
			}
		}
		return err == nil && s.Leader != "" && alive == groupGateways
	})
	t.Logf("group %q up, leader %s: %s after the start", s.Name, c.service[s.Leader], time.Since(begin).Round(time.Millisecond))

	_, key, err := gateway.NewClient("http://"+e.Addr, gateway.Auth{Token: e.Token}, nil).CreateAccount(ctx, "acme")
	if err != nil {
		t.Fatalf("creating an account through gw0's API: %v", err)
	}
	gws := make([]*gateway.Client, groupGateways)
	for i, p := range ports {
		gws[i] = gateway.NewClient("http://127.0.0.1:"+strconv.Itoa(p), gateway.Auth{Key: key.Secret}, nil)
	}
	module, err := os.ReadFile(echo)
	if err != nil {
		t.Fatal(err)
	}
	cid, err := gws[0].PutModule(ctx, bytes.NewReader(module))
	if err == nil {
		_, err = gws[0].Deploy(ctx, gateway.Deploy{Name: "echo", Module: cid, Resources: types.Resources{CPU: 100, Memory: 64 << 20}})
	}
	if err != nil {
		t.Fatalf("deploying echo through gw0: %v", err)
	}
	for i, g := range gws {
		start := time.Now()
		var last string
		eventually(t, 60*time.Second, fmt.Sprintf("a call of echo through gw%d", i), func() bool {
			resp, err := g.Invoke(ctx, "echo", gateway.Call{Method: http.MethodPost, Body: strings.NewReader("hi")})
			last = fmt.Sprint(resp.Status, " ", string(resp.Body), " ", err)
			return err == nil && resp.Status == http.StatusOK && strings.Contains(string(resp.Body), "body: hi")
		})
		t.Logf("echo answered through gw%d (127.0.0.1:%d) after %s: %q", i, ports[i], time.Since(start).Round(time.Millisecond), last)
	}
	t.Logf("test body: %s", time.Since(begin).Round(time.Millisecond))
}

// adminGroup reads the group through a node's API with its token.
func adminGroup(ctx context.Context, e api.Endpoint) (gateway.GroupStatus, error) {
	return gateway.NewClient("http://"+e.Addr, gateway.Auth{Token: e.Token}, nil).Group(ctx)
}
