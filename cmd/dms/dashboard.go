package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/dashboard"
)

func (c *cli) dashboardCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dashboard",
		Short: "Print a link that logs a browser in to the running daemon's web dashboard once",
		Long: `Print a link to the daemon's web dashboard (docs/dashboard.md). It holds a
one-time code: it logs one browser in, within a minute, and never again.
The dashboard is also at http://ADDR/ui/, where the login form takes the
token of api.json in the node's home.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := api.ReadEndpoint(c.home)
			if err != nil {
				return err
			}
			link, exp, err := dashboard.Link(cmd.Context(), e)
			if err != nil {
				return err
			}
			out := struct {
				URL       string    `json:"url"`
				ExpiresAt time.Time `json:"expires_at"`
			}{link, exp}
			return c.print(out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Open within a minute (the link works once):\n  %s\nOr open http://%s%s and log in with the token in %s\n",
					link, e.Addr, dashboard.Prefix, filepath.Join(c.home, api.EndpointFile))
				return err
			})
		},
	}
}
