package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/gateway"
)

func (c *cli) gatewayCmd() *cobra.Command {
	return groupCmd("gateway", "See and change the local daemon's gateway group, and trace its calls (admin: the local daemon's token; docs/gateway.md)",
		c.gatewayStatusCmd(), c.gatewayAddCmd(), c.gatewayRemoveCmd(), c.gatewayTraceCmd())
}

func (c *cli) gatewayStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the group: its members, its raft leader, and who leads each function's queue",
		Args:  cobra.NoArgs,
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, _ []string) error {
			s, err := gw.Group(ctx)
			if err != nil {
				return err
			}
			return c.print(s, func(w io.Writer) error {
				err := writeFields(w, []field{kv("group", s.Name), kv("self", s.Self), kv("leader", s.Leader), kv("healthy", strconv.FormatBool(s.Healthy))})
				if err != nil {
					return err
				}
				fmt.Fprintln(w)
				rows := make([][]string, 0, len(s.Members))
				for _, m := range s.Members {
					rows = append(rows, []string{m.ID, yesNo(m.Leader), yesNo(m.Alive), yesNo(m.Voter), strconv.Itoa(m.Queues)})
				}
				if err := writeTable(w, []string{"MEMBER", "LEADER", "ALIVE", "VOTER", "QUEUES"}, rows); err != nil {
					return err
				}
				if len(s.Queues) == 0 {
					return nil
				}
				fmt.Fprintln(w)
				rows = rows[:0]
				for _, q := range s.Queues {
					rows = append(rows, []string{q.Account + "/" + q.Function, q.Leader, strings.Join(q.Followers, ","), strconv.FormatUint(q.Epoch, 10)})
				}
				return writeTable(w, []string{"QUEUE", "LEADER", "FOLLOWERS", "EPOCH"}, rows)
			})
		}),
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (c *cli) gatewayAddCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "add MULTIADDR|PEERID",
		Short: "Add a gateway to the group; start it with the group's name and --gateway-join",
		Args:  oneArg("MULTIADDR|PEERID"),
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, args []string) error {
			id, err := gw.AddMember(ctx, args[0])
			if err != nil {
				return err
			}
			return c.print(map[string]string{"id": id}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "added %s to the group\n", id)
				return err
			})
		}),
	}
}

func (c *cli) gatewayRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove PEERID",
		Short: "Remove a gateway from the group; its queues move to their followers",
		Args:  oneArg("PEERID"),
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, args []string) error {
			if err := gw.RemoveMember(ctx, args[0]); err != nil {
				return err
			}
			return c.print(map[string]string{"removed": args[0]}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "removed %s from the group\n", args[0])
				return err
			})
		}),
	}
}
