package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
)

func (c *cli) earningsCmd() *cobra.Command {
	var period string
	cmd := &cobra.Command{
		Use:   "earnings",
		Short: "Show what this node earned, per requester and account, from receipts its requesters countersigned",
		Long: `Show what this node earned as a provider: the receipts it issued and their
requesters countersigned, summed per requester and account (- for work that
named no account). --period takes a month, 2026-12 (UTC, by the receipts'
ends); without it, every receipt counts. docs/accounting.md says how a
receipt is priced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			e, err := svc.Earnings(cmd.Context(), period)
			if err != nil {
				return err
			}
			return c.print(e, func(w io.Writer) error { return writeEarnings(w, e) })
		},
	}
	cmd.Flags().StringVar(&period, "period", "", "a month such as 2026-12 (default: all time)")
	return cmd
}

func writeEarnings(w io.Writer, e api.Earnings) error {
	rows := make([][]string, 0, len(e.Lines)+1)
	for _, l := range e.Lines {
		acct := l.Account
		if acct == "" {
			acct = "-"
		}
		rows = append(rows, []string{l.Requester, acct, strconv.Itoa(l.Receipts), l.Amount.String()})
	}
	rows = append(rows, []string{"total", "", strconv.Itoa(e.Receipts), e.Total.String()})
	return writeTable(w, []string{"REQUESTER", "ACCOUNT", "RECEIPTS", "CREDITS"}, rows)
}

func (c *cli) jobReceiptsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "receipts ID",
		Short: "Show the receipts of a job's allocations that this node countersigned",
		Args:  oneArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			list, err := svc.JobReceipts(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				rows := make([][]string, 0, len(list))
				for _, r := range list {
					rows = append(rows, []string{r.ID, r.Provider, fmt.Sprintf("%d", r.Resources.CPU), r.Span().String(), r.Price.String(), r.Amount.String()})
				}
				return writeTable(w, []string{"RECEIPT", "PROVIDER", "MILLICPU", "SPAN", "PRICE", "CREDITS"}, rows)
			})
		},
	}
}
