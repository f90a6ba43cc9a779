package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

// cli holds the global flags and the streams every command writes to.
type cli struct {
	home   string
	output string // "table" or "json"
	stdout io.Writer
	stderr io.Writer
}

// execute runs the command line args and returns the process exit status.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	return exitStatus(root.ExecuteContext(ctx), stderr)
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	c := &cli{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:               "dms",
		Short:             "DMS: a peer-to-peer compute network node and its client",
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(*cobra.Command, []string) error { return c.checkOutput() },
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see `%s --help`)", err, cmd.CommandPath())
	})
	flags := root.PersistentFlags()
	flags.StringVar(&c.home, "home", defaultHome(), "node home directory ($DMS_HOME sets the default)")
	flags.StringVarP(&c.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(c.initCmd(), c.runCmd(), c.jobCmd(), c.nodeCmd(), c.peersCmd(), c.storeCmd(), c.devstackCmd(), c.benchCmd(),
		c.accountCmd(), c.functionCmd(), c.endpointCmd(), c.taskCmd(), c.tagCmd(), c.gatewayCmd(), c.flowCmd(), c.batchCmd(), c.earningsCmd(), c.invoiceCmd(), c.payoutCmd(), c.dashboardCmd())
	return root
}

// defaultHome is $DMS_HOME, else ~/.dms.
func defaultHome() string {
	if h := os.Getenv("DMS_HOME"); h != "" {
		return h
	}
	dir, err := os.UserHomeDir()
	if err != nil {
		return ".dms"
	}
	return filepath.Join(dir, ".dms")
}

func (c *cli) checkOutput() error {
	if c.output != "table" && c.output != "json" {
		return fmt.Errorf("--output %q: want table or json", c.output)
	}
	return nil
}

// client connects to the daemon running in the home.
func (c *cli) client() (*api.Client, error) {
	e, err := api.ReadEndpoint(c.home)
	if err != nil {
		return nil, err
	}
	return api.NewClient(e), nil
}

// oneArg requires exactly one positional argument, called name in the error.
func oneArg(name string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%s takes one %s argument, got %d (usage: %s)", cmd.CommandPath(), name, len(args), cmd.UseLine())
		}
		return nil
	}
}

// exitError asks for an exit status without a message: the command already
// said what happened.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitStatus prints err as "dms: <message>" and returns the exit status.
func exitStatus(err error, stderr io.Writer) int {
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	}
	// Errors of package dms already start with "dms: "; say it once.
	fmt.Fprintf(stderr, "dms: %s\n", strings.TrimPrefix(message(err), "dms: "))
	return 1
}

// message renders err for people. A spec error (of a job or a flow) lists
// one problem per line, after what wraps it (the file name).
func message(err error) string {
	var specErr *jobs.SpecError
	if !errors.As(err, &specErr) || len(specErr.Problems) == 0 {
		return err.Error()
	}
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(err.Error(), specErr.Error()))
	doc := specErr.Doc
	if doc == "" {
		doc = "job spec"
	}
	fmt.Fprintf(&b, "invalid %s:", doc)
	for _, p := range specErr.Problems {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	return b.String()
}

// groupCmd is a command that only holds subcommands: alone it prints its
// help; with an unknown subcommand it fails.
func groupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q (see `%s --help`)", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}
