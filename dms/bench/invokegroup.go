package bench

import (
	"context"
	"fmt"

	"github.com/opendms/dms/dms"
)

// benchGroup is the name of the invoke scenarios' gateway group.
const benchGroup = "bench"

// groupOptions are node i's options for a group of gateways gateways
// (none for a lone gateway): node 0 founds the group alone, the other
// gateways start to join it (they find it by name in the DHT) and
// formGroup adds them, as an operator grows a group.
func groupOptions(i, gateways int) []dms.Option {
	switch {
	case gateways < 2 || i >= gateways:
		return nil
	case i == 0:
		return []dms.Option{dms.WithGatewayGroup(benchGroup, nil, false)}
	default:
		return []dms.Option{dms.WithGatewayGroup(benchGroup, nil, true)}
	}
}

// formGroup adds the network's gateways 1 to gateways-1 to node 0's group
// and waits until it has gateways live members and each says it is
// healthy (in contact with a leader).
func formGroup(ctx context.Context, n *Network, gateways int) error {
	if gateways < 2 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	g := n.Nodes[0].Gateway()
	for i, d := range n.Nodes[1:gateways] {
		info, err := d.Node(ctx)
		if err != nil {
			return err
		}
		if _, err := g.AddMember(ctx, info.Addrs[0]); err != nil {
			return fmt.Errorf("bench: adding gateway %d to the group: %w", i+1, err)
		}
	}
	for {
		alive, healthy, err := 0, 0, error(nil)
		for _, d := range n.Nodes[:gateways] {
			s, gerr := d.Gateway().Group(ctx)
			if gerr != nil {
				err = gerr
				continue
			}
			if s.Healthy {
				healthy++
			}
			if d == n.Nodes[0] {
				for _, m := range s.Members {
					if m.Alive {
						alive++
					}
				}
			}
		}
		if alive == gateways && healthy == gateways {
			return nil
		}
		if serr := sleepCtx(ctx, readyPoll); serr != nil {
			return fmt.Errorf("bench: the group has %d of %d live members, %d healthy (%v): %w", alive, gateways, healthy, err, serr)
		}
	}
}
