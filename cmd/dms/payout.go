package main

import (
	"context"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/gateway"
)

func (c *cli) payoutCmd() *cobra.Command {
	return groupCmd("payout", "Pay providers what the gateway's accounts were charged (admin: the local daemon's token)",
		c.payoutRunCmd(), c.payoutListCmd())
}

func (c *cli) payoutRunCmd() *cobra.Command {
	var asCSV bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Settle every receipt charge not settled yet: a statement per provider",
		Long: `Settle every receipt charge of the gateway's accounts not settled yet: for
each provider owed credits, a statement of the receipts it settles and their
total, paid through the gateway's settler (a node records the statement; the
payment is made by other means), then the provider's account in the gateway's
ledger paid out and each receipt marked settled, once (docs/accounting.md).
Prints the statements made (--csv: a row per receipt and one per total).`,
		Args: cobra.NoArgs,
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, _ []string) error {
			list, err := gw.Payout(ctx)
			if err != nil {
				return err
			}
			return c.printStatements(list, asCSV)
		}),
	}
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print the statements as CSV")
	return cmd
}

func (c *cli) payoutListCmd() *cobra.Command {
	var asCSV bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the statements of every payout, oldest first",
		Args:  cobra.NoArgs,
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, _ []string) error {
			list, err := gw.Statements(ctx)
			if err != nil {
				return err
			}
			return c.printStatements(list, asCSV)
		}),
	}
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print the statements as CSV")
	return cmd
}

func (c *cli) printStatements(list []gateway.Statement, asCSV bool) error {
	if asCSV {
		return gateway.WriteStatementsCSV(c.stdout, list)
	}
	return c.print(list, func(w io.Writer) error {
		rows := make([][]string, 0, len(list))
		for _, s := range list {
			rows = append(rows, []string{s.ID, formatTime(s.At), strconv.Itoa(len(s.Lines)), s.Total.String(), s.Reference})
		}
		return writeTable(w, []string{"STATEMENT", "AT", "RECEIPTS", "CREDITS", "REFERENCE"}, rows)
	})
}
