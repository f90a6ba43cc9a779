package main

import (
	"context"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/gateway"
)

func (c *cli) taskCmd() *cobra.Command {
	a := new(actor)
	return accountGroup(a, "task", "Follow an account's calls: one task per call",
		c.taskListCmd(a), c.taskShowCmd(a), c.taskStopCmd(a), c.taskResultCmd(a))
}

func (c *cli) taskListCmd(a *actor) *cobra.Command {
	var q gateway.TaskQuery
	var state string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the account's tasks, newest first",
		Args:  cobra.NoArgs,
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, _ []string) error {
			q.State = gateway.TaskState(state)
			list, err := gw.ListTasks(ctx, q)
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				return writeTable(w, []string{"ID", "FUNCTION", "REV", "STATE", "STATUS", "NODE", "CREATED"}, taskRows(list))
			})
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&q.Function, "function", "", "only the tasks of function F")
	fs.StringVar(&state, "state", "", "only the tasks in state S: scheduled, running, completed, failed or stopped")
	fs.IntVar(&q.Limit, "limit", 0, "at most N tasks (default: the gateway's)")
	return cmd
}

func taskRows(list []gateway.Task) [][]string {
	rows := make([][]string, 0, len(list))
	for _, t := range list {
		rows = append(rows, []string{t.ID, t.Function, strconv.Itoa(t.Revision), string(t.State),
			orDash(statusText(t.Status)), orDash(shortID(t.Node)), formatTime(t.CreatedAt)})
	}
	return rows
}

func statusText(status int) string {
	if status == 0 {
		return ""
	}
	return strconv.Itoa(status)
}

func taskFields(t gateway.Task) []field {
	fs := []field{kv("id", t.ID), kv("function", t.Function), kv("revision", strconv.Itoa(t.Revision))}
	if t.Endpoint != "" {
		fs = append(fs, kv("endpoint", t.Endpoint))
	}
	fs = append(fs, kv("async", strconv.FormatBool(t.Async)), kv("state", string(t.State)))
	if t.Reason != "" {
		fs = append(fs, kv("reason", t.Reason))
	}
	exit := ""
	if t.ExitCode != nil {
		exit = strconv.Itoa(*t.ExitCode)
	}
	return append(fs, kv("status", orDash(statusText(t.Status))), kv("exit code", orDash(exit)),
		kv("job", orDash(t.Job)), kv("node", orDash(t.Node)), kv("response", orDash(t.Response)),
		kv("created", formatTime(t.CreatedAt)), kv("started", formatTimePtr(t.StartedAt)), kv("ended", formatTimePtr(t.EndedAt)))
}

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return formatTime(*t)
}

// printTask prints a task's fields, or its JSON.
func (c *cli) printTask(t gateway.Task) error {
	return c.print(t, func(w io.Writer) error { return writeFields(w, taskFields(t)) })
}

func (c *cli) taskShowCmd(a *actor) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a task: its state, timings, revision, node, exit code and response",
		Args:  oneArg("ID"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			t, err := gw.GetTask(ctx, args[0])
			if err != nil {
				return err
			}
			return c.printTask(t)
		}),
	}
}

func (c *cli) taskStopCmd(a *actor) *cobra.Command {
	return &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a task that has not ended",
		Args:  oneArg("ID"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			t, err := gw.StopTask(ctx, args[0])
			if err != nil {
				return err
			}
			return c.printTask(t)
		}),
	}
}

func (c *cli) taskResultCmd(a *actor) *cobra.Command {
	var include bool
	cmd := &cobra.Command{
		Use:   "result ID",
		Short: "Print a completed task's answer, as `dms function invoke` does",
		Args:  oneArg("ID"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			resp, err := gw.TaskResult(ctx, args[0])
			if err != nil {
				return err
			}
			return c.printResponse("task "+args[0], resp, include)
		}),
	}
	cmd.Flags().BoolVarP(&include, "include", "i", false, "print the status and headers before the body")
	return cmd
}
