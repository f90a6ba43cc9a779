package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
)

func (c *cli) nodeCmd() *cobra.Command {
	return groupCmd("node", "Show or benchmark the running daemon's node, and what it runs, holds and bid",
		c.nodeInfoCmd(), c.nodeBenchmarkCmd(), c.nodeAllocationsCmd(), c.nodeLocksCmd(), c.nodeBidsCmd())
}

func (c *cli) nodeInfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the node's identity, addresses and capability",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			return c.printNode(svc.Node(cmd.Context()))
		},
	}
}

func (c *cli) nodeBenchmarkCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "benchmark",
		Short: "Re-run the capability benchmark on the running daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			return c.printNode(svc.Benchmark(cmd.Context()))
		},
	}
}

func (c *cli) printNode(info api.NodeInfo, err error) error {
	if err != nil {
		return err
	}
	return c.print(info, func(w io.Writer) error { return writeFields(w, nodeFields(info)) })
}
