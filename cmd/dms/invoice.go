package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opendms/dms/dms/gateway"
)

func (c *cli) invoiceCmd() *cobra.Command {
	return groupCmd("invoice", "List, show and close the invoices of the gateway's accounts (admin: the local daemon's token)",
		c.invoiceListCmd(), c.invoiceShowCmd(), c.invoiceCloseCmd())
}

// invoiceFlags are the flags naming an account and, with a period, one of
// its invoices.
type invoiceFlags struct{ account, period string }

func (f *invoiceFlags) add(fs *pflag.FlagSet, period bool) {
	fs.StringVar(&f.account, "account", "", "the account (required)")
	if period {
		fs.StringVar(&f.period, "period", "", "the month, UTC, such as 2026-12 (required)")
	}
}

// check says which required flag is missing.
func (f *invoiceFlags) check(period bool) error {
	switch {
	case f.account == "":
		return errors.New("--account is required: the account whose invoices these are")
	case period && f.period == "":
		return errors.New("--period is required: a month such as 2026-12")
	}
	return nil
}

func (c *cli) invoiceListCmd() *cobra.Command {
	var f invoiceFlags
	cmd := &cobra.Command{
		Use:   "list --account A",
		Short: "List an account's invoice periods: those with charges or credits, or an invoice closed",
		Args:  cobra.NoArgs,
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, _ []string) error {
			if err := f.check(false); err != nil {
				return err
			}
			list, err := gw.Invoices(ctx, f.account)
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				rows := make([][]string, 0, len(list))
				for _, s := range list {
					rows = append(rows, []string{s.Period, s.Total.String(), s.Credited.String(), invoiceStatus(s.Closed)})
				}
				return writeTable(w, []string{"PERIOD", "TOTAL", "CREDITED", "STATUS"}, rows)
			})
		}),
	}
	f.add(cmd.Flags(), false)
	return cmd
}

func (c *cli) invoiceShowCmd() *cobra.Command {
	var f invoiceFlags
	var format string
	cmd := &cobra.Command{
		Use:   "show --account A --period 2026-12",
		Short: "Show an account's invoice for a month: lines per function or job, credits, totals",
		Long: `Show an account's invoice for a month (UTC): a line per function or job
with its receipts, calls, core-seconds, unit price per core-hour and amount,
the credits given, and the totals. An open invoice is worked out from the
gateway's ledger now; a closed one is as it was closed. --format json, csv
or html prints the document the gateway renders (html: a printable page).`,
		Args: cobra.NoArgs,
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, _ []string) error {
			if err := f.check(true); err != nil {
				return err
			}
			if format != "" {
				doc, err := gw.InvoiceDocument(ctx, f.account, f.period, format)
				if err == nil {
					_, err = c.stdout.Write(doc)
				}
				return err
			}
			inv, err := gw.Invoice(ctx, f.account, f.period)
			if err != nil {
				return err
			}
			return c.print(inv, func(w io.Writer) error { return writeInvoice(w, inv) })
		}),
	}
	f.add(cmd.Flags(), true)
	cmd.Flags().StringVar(&format, "format", "", "json, csv or html: the gateway's rendering (default: a table, or -o json)")
	return cmd
}

func (c *cli) invoiceCloseCmd() *cobra.Command {
	var f invoiceFlags
	cmd := &cobra.Command{
		Use:   "close --account A --period 2026-11",
		Short: "Close an account's invoice for a month that has ended: it never changes after",
		Args:  cobra.NoArgs,
		RunE: c.admin(func(ctx context.Context, gw *gateway.Client, _ []string) error {
			if err := f.check(true); err != nil {
				return err
			}
			inv, err := gw.CloseInvoice(ctx, f.account, f.period)
			if err != nil {
				return err
			}
			return c.print(inv, func(w io.Writer) error { return writeInvoice(w, inv) })
		}),
	}
	f.add(cmd.Flags(), true)
	return cmd
}

func invoiceStatus(closed bool) string {
	if closed {
		return "closed"
	}
	return "open"
}

// writeInvoice prints an invoice: its fields, its lines, its credits.
func writeInvoice(w io.Writer, inv gateway.Invoice) error {
	err := writeFields(w, []field{kv("account", inv.Account), kv("period", inv.Period), kv("status", invoiceStatus(inv.Closed)),
		kv("total", inv.Total.String()), kv("credited", inv.Credited.String())})
	if err != nil {
		return err
	}
	rows := make([][]string, 0, len(inv.Lines))
	for _, l := range inv.Lines {
		name := l.Name
		if l.Late != "" {
			name += " (late, of " + l.Late + ")"
		}
		rows = append(rows, []string{name, strconv.Itoa(l.Count), strconv.FormatUint(l.Calls, 10), gateway.CoreSeconds(l.CoreMS), l.UnitPrice, l.Amount.String()})
	}
	fmt.Fprintln(w)
	if err := writeTable(w, []string{"NAME", "RECEIPTS", "CALLS", "CORE-SECONDS", "UNIT PRICE", "AMOUNT"}, rows); err != nil {
		return err
	}
	rows = rows[:0]
	for _, cr := range inv.Credits {
		rows = append(rows, []string{formatTime(cr.At), cr.ID, cr.Amount.String(), cr.Memo})
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return writeTable(w, []string{"CREDITED", "ENTRY", "AMOUNT", "MEMO"}, rows)
}
