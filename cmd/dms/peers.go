package main

import (
	"io"

	"github.com/spf13/cobra"
)

func (c *cli) peersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List the peers the running daemon is connected to",
		Args:  cobra.NoArgs,
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
				return writeTable(w, []string{"PEER", "LATENCY", "ADDRS"}, peerRows(list))
			})
		},
	}
	cmd.AddCommand(c.reputationCmd())
	return cmd
}

func (c *cli) reputationCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reputation",
		Short: "Show how the peers the daemon asked for bids behaved, most penalised first",
		Long: `Show the requester's reputation of peers: a penalty that grows when a peer
does not confirm an accept (no_confirm), loses a job (lost), leaves a bid
request unanswered (silent) or rejects an accept after bidding (rejected),
and halves every 10 minutes. A POOR peer is offered jobs only after peers
in good standing; an UNHEARD one is not waited for in bid windows until it
answers again.`,
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
				return writeTable(w, []string{"PEER", "PENALTY", "POOR", "UNHEARD", "LAST", "EVENTS"}, reputationRows(list))
			})
		},
	}
}
