package main

import (
	"io"

	"github.com/spf13/cobra"
)

func (c *cli) peersCmd() *cobra.Command {
	return &cobra.Command{
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
}
