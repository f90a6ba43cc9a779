package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/node"
)

// A provider's own view: dms node allocations, locks and bids.

// pageFlags are the flags of a paged listing.
type pageFlags struct {
	limit int
	after string
}

func (p *pageFlags) add(cmd *cobra.Command) {
	cmd.Flags().IntVar(&p.limit, "limit", api.DefaultPage, fmt.Sprintf("show at most this many (1 to %d)", api.MaxPage))
	cmd.Flags().StringVar(&p.after, "after", "", "show the page after this cursor (printed under the previous page)")
}

// query is the page the flags ask for, with filter.
func (p *pageFlags) query(filter string) (api.PageQuery, error) {
	if p.limit < 1 || p.limit > api.MaxPage {
		return api.PageQuery{}, fmt.Errorf("--limit %d: want 1 to %d", p.limit, api.MaxPage)
	}
	return api.PageQuery{Filter: filter, Limit: p.limit, After: p.after}, nil
}

// writeNext says how to read the next page, if there is one.
func writeNext(w io.Writer, next string) error {
	if next == "" {
		return nil
	}
	_, err := fmt.Fprintf(w, "more: --after %s\n", next)
	return err
}

func (c *cli) nodeAllocationsCmd() *cobra.Command {
	var state string
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "allocations",
		Short: "List the allocations this node runs and ran, newest first",
		Long: `List the allocations this node runs and ran, from its database, newest
first: job, requester, state, resources, when it started and ended, how long
it ran, and the bid's price (credits per core-hour). --state keeps those in
one state: locked, running, completed, failed or cancelled. A lock that
ended without starting leaves no record.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := page.query(state)
			if err != nil {
				return err
			}
			svc, err := c.client()
			if err != nil {
				return err
			}
			p, err := svc.NodeAllocations(cmd.Context(), q)
			if err != nil {
				return err
			}
			return c.print(p, func(w io.Writer) error {
				if err := writeTable(w, []string{"ALLOCATION", "JOB", "REQUESTER", "STATE", "RESOURCES", "STARTED", "ENDED", "DURATION", "PRICE"},
					allocationRows(p.Allocations)); err != nil {
					return err
				}
				return writeNext(w, p.Next)
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only allocations in this state: "+stateNames())
	page.add(cmd)
	return cmd
}

// stateNames lists the states an allocation listing filters on.
func stateNames() string {
	states := node.AllocationStates()
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func allocationRows(list []api.Allocation) [][]string {
	rows := make([][]string, 0, len(list))
	for _, a := range list {
		dur := "-"
		if !a.StartedAt.IsZero() {
			dur = roundDuration(time.Duration(a.DurationMillis) * time.Millisecond).String()
		}
		rows = append(rows, []string{a.ID, a.JobID, shortID(a.Requester), string(a.State), a.Resources.String(),
			formatTime(a.StartedAt), formatTime(a.EndedAt), dur, a.Price.String()})
	}
	return rows
}

func (c *cli) nodeLocksCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "locks",
		Short: "Show the capability this node holds for bids and has locked for jobs, with the ledger's totals",
		Long: `Show the node's ledger now: what it registered (offers), what is available,
held behind bids, locked for accepted jobs and running; then each hold (until
when the bid stands) and each lock (its epoch, and until when it waits for
its invocation; "running" once it started).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			l, err := svc.NodeLocks(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(l, func(w io.Writer) error { return writeLedger(w, l) })
		},
	}
}

func writeLedger(w io.Writer, l api.Ledger) error {
	err := writeFields(w, []field{
		kv("registered", l.Registered.String()), kv("available", l.Available.String()), kv("held", l.Held.String()),
		kv("locked", l.Locked.String()), kv("running", l.Running.String()), kv("epoch", strconv.FormatUint(l.Epoch, 10)),
	})
	if err != nil {
		return err
	}
	rows := make([][]string, 0, len(l.Holds)+len(l.Locks))
	for _, h := range l.Holds {
		rows = append(rows, []string{"hold", h.AllocationID, h.JobID, shortID(h.Requester), h.Resources.String(), h.Price.String(), "-", "until " + formatTime(h.Until)})
	}
	for _, k := range l.Locks {
		until := "running"
		if !k.Running {
			until = "expires " + formatTime(k.Expiry)
		}
		rows = append(rows, []string{"lock", k.AllocationID, k.JobID, shortID(k.Requester), k.Resources.String(), k.Price.String(), strconv.FormatUint(k.Epoch, 10), until})
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "\nno holds or locks")
		return err
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	return writeTable(w, []string{"KIND", "ALLOCATION", "JOB", "REQUESTER", "RESOURCES", "PRICE", "EPOCH", "ENDS"}, rows)
}

func (c *cli) nodeBidsCmd() *cobra.Command {
	var outcome string
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "bids",
		Short: "List the bid requests this node received and what it answered, newest first",
		Long: `List the bid requests this node answered, newest first: the job, its
requester, what it asked for (executor, resources, the highest price it
takes), and the answer: a bid at the node's price, or a decline and why.
--outcome keeps bids or declines. Records older than store.retention are
dropped; a bid request dropped unanswered (a full mailbox) leaves none.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := page.query(outcome)
			if err != nil {
				return err
			}
			svc, err := c.client()
			if err != nil {
				return err
			}
			p, err := svc.NodeBids(cmd.Context(), q)
			if err != nil {
				return err
			}
			return c.print(p, func(w io.Writer) error {
				if err := writeTable(w, []string{"RECEIVED", "JOB", "REQUESTER", "ASKED", "OUTCOME", "PRICE / REASON"}, bidRows(p.Bids)); err != nil {
					return err
				}
				if p.Lost > 0 {
					if _, err := fmt.Fprintf(w, "%d answers since the start not recorded (the store fell behind or failed)\n", p.Lost); err != nil {
						return err
					}
				}
				return writeNext(w, p.Next)
			})
		},
	}
	cmd.Flags().StringVar(&outcome, "outcome", "", "only bid requests with this outcome: bid or declined")
	page.add(cmd)
	return cmd
}

func bidRows(list []api.BidRecord) [][]string {
	rows := make([][]string, 0, len(list))
	for _, b := range list {
		asked := b.Executor + " " + b.Resources.String()
		if b.MaxPrice > 0 {
			asked += ", at most " + b.MaxPrice.String()
		}
		answer := b.Price.String()
		if b.Outcome != "bid" {
			answer = strings.Join(b.Reasons, "; ")
			if b.Busy {
				answer += " (for now)"
			}
		}
		rows = append(rows, []string{formatTime(b.ReceivedAt), b.JobID, shortID(b.Requester), asked, b.Outcome, answer})
	}
	return rows
}
