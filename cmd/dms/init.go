package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms"
)

func (c *cli) initCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a node home: key, config, identity and a first capability benchmark",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := dms.Init(cmd.Context(), c.home, dms.InitOptions{Force: force})
			if err != nil {
				return err
			}
			return c.print(info, func(w io.Writer) error {
				fmt.Fprintf(w, "initialized node home %s\n", c.home)
				fs := identityFields(info)
				if info.Capability != nil {
					fs = append(fs, capabilityFields(*info.Capability)...)
				}
				return writeFields(w, fs)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing home's key and config")
	return cmd
}
