package dms

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/types"
)

// TestGatewayGroupOverLibp2p forms a group of three gateways over real
// libp2p hosts, the way an operator grows one: node 0 founds it alone,
// nodes 1 and 2 start with --gateway-join (node 1 naming node 0, node 2
// finding the group in the DHT) and are added by node 0. Node 3
// is the provider. A function deployed through one member is called
// through every member (forwarded to its queue's leader), an async call
// taken by one completes, and when the queue's leader closes, the others
// go on serving once the queue moved; the closed member is then removed.
func TestGatewayGroupOverLibp2p(t *testing.T) {
	nodes := growNet(t, 4, func(i int) bool { return i == 3 }, func(i int, started []*DMS) []Option {
		opts := []Option{WithLease(10 * time.Second)}
		switch i {
		case 0:
			opts = append(opts, WithGatewayGroup("team", nil, false))
		case 1:
			opts = append(opts, WithGatewayGroup("team", []string{started[0].host.Addrs()[0]}, true))
		case 2:
			opts = append(opts, WithGatewayGroup("team", nil, true))
		}
		return opts
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gws := []*gateway.Gateway{nodes[0].Gateway(), nodes[1].Gateway(), nodes[2].Gateway()}
	for _, d := range nodes[1:3] {
		if _, err := gws[0].AddMember(ctx, d.host.Addrs()[0]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "three live members", func() bool {
		s, err := gws[0].Group(ctx)
		alive := 0
		for _, m := range s.Members {
			if m.Alive {
				alive++
			}
		}
		return err == nil && alive == 3 && s.Leader != ""
	})
	if _, _, err := gws[0].CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	svc1, err := gws[1].As(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := svc1.PutModule(ctx, bytes.NewReader(tinywasm.Module(0, "Status: 200 OK\n\nhello")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc1.Deploy(ctx, gateway.Deploy{Name: "hello", Module: mod, Resources: types.Resources{CPU: 100, Memory: 16 << 20}}); err != nil {
		t.Fatal(err)
	}
	call := func(g *gateway.Gateway) error {
		svc, err := g.As(ctx, "acme")
		if err != nil {
			return err
		}
		res, err := svc.Invoke(ctx, "hello", gateway.Call{})
		if err == nil && string(res.Body) != "hello" {
			t.Errorf("a call answered %q", res.Body)
		}
		return err
	}
	for i, g := range gws {
		if err := call(g); err != nil {
			t.Fatalf("a call through member %d: %v", i, err)
		}
	}
	s, err := gws[2].Group(ctx)
	if err != nil || len(s.Queues) != 1 {
		t.Fatalf("group %+v, %v: want one queue", s, err)
	}
	leader := s.Queues[0].Leader
	t.Logf("the queue is led by %s; the group by %s", leader, s.Leader)
	svc2, _ := gws[2].As(ctx, "acme")
	task, err := svc2.InvokeAsync(ctx, "hello", gateway.Call{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the async call to complete", func() bool {
		got, err := svc2.GetTask(ctx, task.ID)
		return err == nil && got.State == gateway.TaskCompleted
	})

	var gone int
	for i := range gws {
		if nodes[i].host.ID() == leader {
			gone = i
		}
	}
	closed := time.Now()
	nodes[gone].Close()
	var rest []*gateway.Gateway
	for i, g := range gws {
		if i != gone {
			rest = append(rest, g)
		}
	}
	waitFor(t, time.Minute, "calls through the others to succeed again", func() bool {
		return call(rest[0]) == nil && call(rest[1]) == nil
	})
	t.Logf("calls served again %s after the queue's leader closed", time.Since(closed).Round(time.Millisecond))
	if err := rest[0].RemoveMember(ctx, leader); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "two members left", func() bool {
		s, err := rest[1].Group(ctx)
		return err == nil && len(s.Members) == 2
	})
}
