package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func (c *cli) jobCmd() *cobra.Command {
	return groupCmd("job", "Submit jobs to the running daemon and follow them",
		c.jobRunCmd(), c.jobListCmd(), c.jobStatusCmd(), c.jobLogsCmd(), c.jobResultCmd(), c.jobReceiptsCmd(), c.jobTraceCmd(), c.jobCancelCmd())
}

func (c *cli) jobRunCmd() *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Submit the job in FILE (YAML or JSON), follow it and print its output",
		Long: `Submit the job in FILE (YAML or JSON), follow it and print its output.

Progress goes to stderr, one line per change. When the job completes, its
stdout is written to stdout and its stderr to stderr (with --output json, the
final job record is printed instead). Exit status: 0 if the program exited 0;
1 if it exited non-zero, or the job failed or was cancelled.`,
		Args: oneArg("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := jobs.ParseFile(args[0])
			if err != nil {
				return err
			}
			svc, err := c.client()
			if err != nil {
				return err
			}
			return exitWith(c.runJob(cmd.Context(), svc, spec, detach))
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "print the job ID and return at once")
	return cmd
}

// exitWith turns runJob's outcome into a command's error.
func exitWith(code int, err error) error {
	if err == nil && code != 0 {
		return exitError{code}
	}
	return err
}

// runJob uploads the spec's local files to svc, submits it and, unless
// detach, follows it to the end (progress on stderr) and prints its output.
// It returns the exit status the command should end with.
func (c *cli) runJob(ctx context.Context, svc api.Service, spec *jobs.Spec, detach bool) (int, error) {
	if err := api.Upload(ctx, svc, spec); err != nil {
		return 1, err
	}
	job, err := svc.SubmitJob(ctx, spec)
	if err != nil {
		return 1, err
	}
	if detach {
		return 0, c.printID(job.ID)
	}
	fmt.Fprintf(c.stderr, "submitted job %s\n", job.ID)
	final, err := c.follow(ctx, svc, job.ID)
	if err != nil {
		return 1, err
	}
	return c.finish(ctx, svc, final)
}

// follow prints a line on stderr for every change of the job until it ends.
func (c *cli) follow(ctx context.Context, svc api.Service, id string) (api.Job, error) {
	events, err := svc.WatchJob(ctx, id)
	if err != nil {
		return api.Job{}, err
	}
	var last api.Job
	for job := range events {
		if line := progressLine(last, job); line != "" {
			fmt.Fprintln(c.stderr, line)
		}
		last = job
	}
	switch {
	case ctx.Err() != nil:
		return last, fmt.Errorf("interrupted; job %s goes on: follow it with `dms job status %s`, stop it with `dms job cancel %s`", id, id, id)
	case !last.State.Terminal():
		return last, fmt.Errorf("lost the events of job %s before it ended: see `dms job status %s`", id, id)
	}
	return last, nil
}

// progressLine describes cur if it differs from prev in state or node.
func progressLine(prev, cur api.Job) string {
	if prev.State == cur.State && prev.Node == cur.Node {
		return ""
	}
	switch cur.State {
	case types.JobPlaced, types.JobRunning:
		return fmt.Sprintf("%s on %s", cur.State, cur.Node)
	case types.JobCompleted:
		if cur.Result == nil {
			return "completed"
		}
		return "completed in " + formatMillis(cur.Result.DurationMillis)
	}
	if cur.Reason == "" {
		return string(cur.State)
	}
	return fmt.Sprintf("%s: %s", cur.State, cur.Reason)
}

// finish prints a finished job's outcome and returns the exit status.
func (c *cli) finish(ctx context.Context, svc api.Service, job api.Job) (int, error) {
	if job.State != types.JobCompleted || job.Result == nil {
		return 1, jobEndedError(job)
	}
	code := 0
	if job.Result.ExitCode != 0 {
		code = 1
	}
	if c.output == "json" {
		return code, writeJSON(c.stdout, job)
	}
	if err := c.printOutput(ctx, svc, job.Result); err != nil {
		return 1, err
	}
	if code != 0 {
		fmt.Fprintf(c.stderr, "dms: job %s: the program exited with code %d\n", job.ID, job.Result.ExitCode)
	}
	return code, nil
}

// printOutput copies a result's stdout to stdout and stderr to stderr.
func (c *cli) printOutput(ctx context.Context, svc api.Service, r *types.Result) error {
	if err := copyBlob(ctx, svc, r.Stdout, c.stdout); err != nil {
		return fmt.Errorf("fetching stdout: %w", err)
	}
	if err := copyBlob(ctx, svc, r.Stderr, c.stderr); err != nil {
		return fmt.Errorf("fetching stderr: %w", err)
	}
	if r.StdoutTruncated || r.StderrTruncated {
		fmt.Fprintln(c.stderr, "dms: the output was truncated at the node's limit")
	}
	return nil
}

// copyBlob writes the blob named by cid to w; an empty cid writes nothing.
func copyBlob(ctx context.Context, svc api.Service, cid string, w io.Writer) error {
	if cid == "" {
		return nil
	}
	data, err := svc.GetBlob(ctx, cid)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// jobEndedError says that a job ended without a result, and why.
func jobEndedError(job api.Job) error {
	if job.Reason == "" {
		return fmt.Errorf("job %s %s", job.ID, job.State)
	}
	return fmt.Errorf("job %s %s: %s", job.ID, job.State, job.Reason)
}

func (c *cli) jobListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the jobs submitted through the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			list, err := svc.ListJobs(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				return writeTable(w, []string{"ID", "NAME", "STATE", "NODE", "CREATED"}, jobRows(list))
			})
		},
	}
}

func (c *cli) jobStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status ID",
		Short: "Show a job's state, node, attempts and result",
		Args:  oneArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, err := c.getJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.print(job, func(w io.Writer) error { return writeFields(w, jobFields(job)) })
		},
	}
}

func (c *cli) jobResultCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "result ID",
		Short: "Show a finished job's exit code and the CIDs of its outputs",
		Args:  oneArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, err := c.getJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := requireResult(job); err != nil {
				return err
			}
			return c.print(job.Result, func(w io.Writer) error { return writeFields(w, resultFields(*job.Result)) })
		},
	}
}

func (c *cli) jobLogsCmd() *cobra.Command {
	var stderr bool
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a finished job's stdout (or stderr), as raw bytes whatever --output says",
		Args:  oneArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			job, err := svc.GetJob(cmd.Context(), args[0])
			if err == nil {
				err = requireResult(job)
			}
			if err != nil {
				return err
			}
			cid := job.Result.Stdout
			if stderr {
				cid = job.Result.Stderr
			}
			return copyBlob(cmd.Context(), svc, cid, c.stdout)
		},
	}
	cmd.Flags().BoolVar(&stderr, "stderr", false, "print stderr instead of stdout")
	return cmd
}

func (c *cli) jobCancelCmd() *cobra.Command {
	return c.cancelCmd("job", "Cancel a job that has not ended", api.Service.CancelJob)
}

// cancelCmd is "cancel ID" for a kind of thing the daemon runs.
func (c *cli) cancelCmd(kind, short string, cancel func(api.Service, context.Context, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: short,
		Args:  oneArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			id := args[0]
			if err := cancel(svc, cmd.Context(), id); err != nil {
				return err
			}
			return c.print(map[string]any{"id": id, "cancelled": true}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "cancelled %s %s\n", kind, id)
				return err
			})
		},
	}
}

// getJob fetches one job from the daemon.
func (c *cli) getJob(ctx context.Context, id string) (api.Job, error) {
	svc, err := c.client()
	if err != nil {
		return api.Job{}, err
	}
	return svc.GetJob(ctx, id)
}

// requireResult explains why a job has no result yet, or none at all.
func requireResult(job api.Job) error {
	switch {
	case job.Result != nil:
		return nil
	case !job.State.Terminal():
		return fmt.Errorf("job %s is %s: no result yet (wait with `dms job status %s`)", job.ID, job.State, job.ID)
	}
	return jobEndedError(job)
}
