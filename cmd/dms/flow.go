package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

func (c *cli) flowCmd() *cobra.Command {
	return groupCmd("flow", "Run workflows (docs/workflows.md) on the running daemon and follow them",
		c.flowRunCmd(), c.flowStatusCmd(), c.flowListCmd(), c.flowCancelCmd(), c.flowOutputsCmd())
}

func (c *cli) flowRunCmd() *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Submit the flow in FILE (YAML or JSON), follow it and print its outputs",
		Long: `Submit the flow in FILE (YAML or JSON; docs/workflows.md), follow it and
print its outputs.

Local files the flow names (modules, input directories, for_each
directories) are uploaded first. Progress goes to stderr: on a terminal, the
steps as a tree redrawn in place; otherwise one line each time a step's state
changes. When the flow completes, each output is printed on stdout under a
line "==> NAME <==": its content when it is text of at most 64 KiB, else its
CID and size (fetch it with dms flow outputs ID --out DIR).

With --output json, stdout is NDJSON: every event of the flow as the daemon
sends it (GET /v1/flows/{id}/events), then the final flow as the last line.

Ctrl-C stops following; the flow goes on in the daemon (follow it again with
dms flow status ID --watch). Exit status: 0 if the flow completed; 1 if it
failed or was cancelled, or on any error.`,
		Args: oneArg("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := jobs.ParseFlowFile(args[0])
			if err != nil {
				return err
			}
			svc, err := c.client()
			if err != nil {
				return err
			}
			return c.runFlow(cmd.Context(), svc, f, detach, errDetached)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "print the flow ID and return at once")
	return cmd
}

// errDetached is how `dms flow run` and `dms flow status --watch` stop on
// Ctrl-C: the flow goes on in the daemon.
var errDetached = errors.New("detached")

// runFlow uploads the flow's local files to svc, submits it and, unless
// detach, follows it to the end and prints its outputs. A Ctrl-C (ctx
// done) ends it with interrupted, which the error then names with the
// flow's ID.
func (c *cli) runFlow(ctx context.Context, svc api.Service, f *jobs.Flow, detach bool, interrupted error) error {
	if err := api.UploadFlow(ctx, svc, f); err != nil {
		return err
	}
	fl, err := svc.SubmitFlow(ctx, f)
	if err != nil {
		return err
	}
	if detach {
		return c.printID(fl.ID)
	}
	if c.output != "json" {
		fmt.Fprintf(c.stderr, "submitted flow %s\n", fl.ID)
	}
	final, err := c.followFlow(ctx, svc, fl.ID, c.stderr)
	if err != nil {
		return interruptedAs(err, interrupted, "flow", fl.ID)
	}
	if err := flowEndedError(final); err != nil {
		return err
	}
	if c.output == "json" {
		return nil
	}
	return c.printOutputs(ctx, svc, final.ID, final.Outputs)
}

// flowEndedError says why a flow that ended did not complete.
func flowEndedError(f api.Flow) error {
	switch {
	case f.State == api.FlowCompleted:
		return nil
	case f.Reason == "":
		return fmt.Errorf("flow %s %s", f.ID, f.State)
	}
	return fmt.Errorf("flow %s %s: %s", f.ID, f.State, f.Reason)
}

// followFlow follows a flow to its end and returns it. With --output json
// it writes each event to stdout as a line of JSON, then the final flow;
// otherwise it shows the flow's progress on w.
func (c *cli) followFlow(ctx context.Context, svc api.FlowService, id string, w io.Writer) (api.Flow, error) {
	v := &flowView{}
	if err := follow(ctx, c, "flow", id, svc.WatchFlow, v, newDisplay(w)); err != nil {
		return v.flow, err
	}
	if c.output == "json" {
		return v.flow, writeJSONLine(c.stdout, v.flow)
	}
	return v.flow, nil
}

func (c *cli) flowStatusCmd() *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a flow's steps as a tree: states, fan-out counts, cache hits, why it failed",
		Long: `Show a flow's steps as a tree in the order they run (a step under the step it
needs; a step that needs several names them), with each step's state, a
fan-out's counts, and why the flow failed.

With --watch, follow the flow to its end: on a terminal the tree is redrawn in
place; otherwise a line is printed each time a step's state changes, then the
final tree. --watch exits 1 if the flow failed or was cancelled. With
--output json: the flow (GET /v1/flows/{id}); with --watch, NDJSON of its
events then the final flow, as dms flow run.`,
		Args: oneArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			if watch {
				return c.watchFlow(cmd.Context(), svc, args[0])
			}
			f, err := svc.GetFlow(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.print(f, func(w io.Writer) error { return writeLines(w, flowLines(f, time.Now())) })
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the flow until it ends")
	return cmd
}

// watchFlow is `dms flow status --watch`: the progress goes to stdout.
func (c *cli) watchFlow(ctx context.Context, svc api.FlowService, id string) error {
	final, err := c.followFlow(ctx, svc, id, c.stdout)
	if err != nil {
		return interruptedAs(err, errDetached, "flow", id)
	}
	if tty, _ := terminal(c.stdout); !tty && c.output != "json" {
		if err := writeLines(c.stdout, flowLines(final, time.Now())); err != nil {
			return err
		}
	}
	return flowEndedError(final)
}

func writeLines(w io.Writer, lines []string) error {
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}

func (c *cli) flowListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the flows of the daemon, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			list, err := svc.ListFlows(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				return writeTable(w, []string{"ID", "NAME", "STATE", "STEPS", "CREATED"}, flowRows(list))
			})
		},
	}
}

// flowRows are the flows' table rows; STEPS counts the completed steps.
func flowRows(list []api.Flow) [][]string {
	rows := make([][]string, 0, len(list))
	for _, f := range list {
		done := 0
		for _, st := range f.Steps {
			if st.State == api.FlowCompleted {
				done++
			}
		}
		rows = append(rows, []string{f.ID, orDash(f.Name), f.State, fmt.Sprintf("%d/%d", done, len(f.Steps)), formatTime(f.CreatedAt)})
	}
	return rows
}

func (c *cli) flowCancelCmd() *cobra.Command {
	return c.cancelCmd("flow", "Cancel a flow that has not ended, and its running jobs", api.Service.CancelFlow)
}
