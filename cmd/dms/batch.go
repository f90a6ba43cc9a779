package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

func (c *cli) batchCmd() *cobra.Command {
	return groupCmd("batch", "Run batches of replicated units (docs/batches.md) on the running daemon and follow them",
		c.batchRunCmd(), c.batchStatusCmd(), c.batchListCmd(), c.batchCancelCmd(), c.batchResultsCmd())
}

func (c *cli) batchRunCmd() *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Submit the batch in FILE (YAML or JSON) and follow it to its end",
		Long: `Submit the batch in FILE (YAML or JSON; docs/batches.md) and follow it to
its end.

Local files the batch names (the template's module, image archive and
input directory, the files of units.dir) are uploaded first. Progress goes
to stderr: on a terminal, a progress bar with the units done, failed,
running and queued, the replicas issued, disagreeing and late, the rate and
the time left, redrawn in place; otherwise a line at each tenth of the units
ended, then that picture once the batch ended, and how to save the results
(dms batch results ID --out DIR).

With --output json, stdout is NDJSON: every snapshot of the batch as the
daemon sends it (GET /v1/batches/{id}/events), the last one final.

Ctrl-C stops following; the batch goes on in the daemon (follow it again
with dms batch status ID --watch). Exit status: 0 if every unit completed;
1 if a unit failed, the batch was cancelled, or on any error.`,
		Args: oneArg("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := jobs.ParseBatchFile(args[0])
			if err != nil {
				return err
			}
			svc, err := c.client()
			if err != nil {
				return err
			}
			return c.runBatch(cmd.Context(), svc, b, detach)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "print the batch ID and return at once")
	return cmd
}

// runBatch uploads the batch's local files to svc, submits it and,
// unless detach, follows it to the end.
func (c *cli) runBatch(ctx context.Context, svc api.Service, b *jobs.Batch, detach bool) error {
	if err := api.UploadBatch(ctx, svc, b); err != nil {
		return err
	}
	sub, err := svc.SubmitBatch(ctx, b)
	if err != nil {
		return err
	}
	if detach {
		return c.printID(sub.ID)
	}
	if c.output != "json" {
		fmt.Fprintf(c.stderr, "submitted batch %s (%d units)\n", sub.ID, b.Len())
	}
	final, err := c.followBatch(ctx, svc, sub.ID, c.stderr)
	if err != nil {
		return interruptedAs(err, errDetached, "batch", sub.ID)
	}
	if err := batchEndedError(final); err != nil {
		return err
	}
	if c.output != "json" {
		fmt.Fprintf(c.stderr, "save the results with `dms batch results %s --out DIR`\n", sub.ID)
	}
	return nil
}

// followBatch follows a batch to its end and returns it. With --output
// json it writes each snapshot to stdout as a line of JSON; otherwise it
// shows the batch's progress on w.
func (c *cli) followBatch(ctx context.Context, svc api.BatchService, id string, w io.Writer) (api.Batch, error) {
	v := &batchView{}
	err := follow(ctx, c, "batch", id, svc.WatchBatch, v, newBatchDisplay(w))
	return v.b, err
}

func (c *cli) batchStatusCmd() *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a batch's progress: units done, failed, running and queued, replicas, rate and ETA",
		Long: `Show a batch's progress: its units done (decided by a quorum), failed (no
quorum within their replicas), running and queued; its replicas issued,
disagreeing with their unit's verdict, and late; while it runs, the rate of
units ended and the time left; how it decides (replication, quorum,
max_replicas, adaptive, deadline, parallel); and why it failed.

With --watch, follow the batch to its end: on a terminal its picture is
redrawn in place; otherwise a line is printed at each tenth of the units
ended, then the final picture. --watch exits 1 if a unit failed or the
batch was cancelled. With --output json: the batch (GET /v1/batches/{id});
with --watch, NDJSON of its snapshots, as dms batch run.`,
		Args: oneArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			if watch {
				final, err := c.followBatch(cmd.Context(), svc, args[0], c.stdout)
				if err != nil {
					return interruptedAs(err, errDetached, "batch", args[0])
				}
				return batchEndedError(final)
			}
			b, err := svc.GetBatch(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.print(b, func(w io.Writer) error {
				lines := batchLines(b, time.Now())
				if p := policyLine(b); p != "" {
					lines = append(lines, p)
				}
				return writeLines(w, lines)
			})
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the batch until it ends")
	return cmd
}

func (c *cli) batchListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the batches of the daemon, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			list, err := svc.ListBatches(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				return writeTable(w, []string{"ID", "NAME", "STATE", "DONE", "FAILED", "CREATED"}, batchRows(list))
			})
		},
	}
}

// batchRows are the batches' table rows; DONE counts the units decided.
func batchRows(list []api.Batch) [][]string {
	rows := make([][]string, 0, len(list))
	for _, b := range list {
		c := b.Counts
		rows = append(rows, []string{b.ID, orDash(b.Name), b.State, fmt.Sprintf("%d/%d", c.Completed, c.Units),
			fmt.Sprint(c.Failed), formatTime(b.CreatedAt)})
	}
	return rows
}

func (c *cli) batchCancelCmd() *cobra.Command {
	return c.cancelCmd("batch", "Cancel a batch that has not ended, and its running replicas", api.Service.CancelBatch)
}
