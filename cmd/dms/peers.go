package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func (c *cli) peersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List the peers the running daemon is connected to, their latency and what each offers",
		Long: `List the peers the running daemon is connected to: latency, and what each
offers from its signed capability record: executors, resources offered,
price (credits per core-hour), and flags (renewable: runs on renewable
energy; idle-only: bids only while its owner leaves the host idle). The
daemon keeps the records it got for 5 minutes; a peer whose record has not
come within a second shows ? (a later call asks again).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			list, err := svc.Peers(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				return writeTable(w, []string{"PEER", "LATENCY", "EXECUTORS", "OFFERED", "PRICE", "FLAGS", "ADDRS"}, peerRows(list))
			})
		},
	}
	cmd.AddCommand(c.reputationCmd())
	return cmd
}

func (c *cli) reputationCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reputation",
		Short: "Show how the peers the daemon asked for bids behaved, most penalised first",
		Long: `Show the requester's reputation of peers: a penalty that grows when a peer
does not confirm an accept (no_confirm), loses a job (lost), leaves a bid
request unanswered (silent) or rejects an accept after bidding (rejected),
and halves every 10 minutes. A POOR peer is offered jobs only after peers
in good standing; an UNHEARD one is not waited for in bid windows until it
answers again.

AGREED and DISAGREED count the peer's replicated results (batches) that
agreed, or not, with their unit's quorum. TRUST is "distrusted" after one
disagreed: its bids are dropped until dms peers reputation forgive PEER;
"trusted" after 10 agreed and none disagreed: under adaptive replication
its results stand alone, spot-checked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			list, err := svc.Reputation(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				return writeTable(w, []string{"PEER", "PENALTY", "POOR", "UNHEARD", "AGREED", "DISAGREED", "TRUST", "LAST", "EVENTS"},
					reputationRows(list))
			})
		},
	}
	cmd.AddCommand(c.forgiveCmd())
	return cmd
}

func (c *cli) forgiveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "forgive PEER",
		Short: "Clear a distrusted peer's disagreements, so that the daemon takes its bids again",
		Args:  oneArg("PEER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			p := args[0]
			if err := svc.ForgivePeer(cmd.Context(), p); err != nil {
				return err
			}
			return c.print(map[string]any{"id": p, "forgiven": true}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "forgave %s: its bids count again\n", p)
				return err
			})
		},
	}
}
