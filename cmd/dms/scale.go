package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/jobs"
)

// scalingFlags are the flags of a function's scaling, as given.
type scalingFlags struct {
	cmd                      *cobra.Command
	min, max, conc, maxQueue int
	keepAlive                string
}

func (f *scalingFlags) addFlags(cmd *cobra.Command) {
	f.cmd = cmd
	fs := cmd.Flags()
	fs.IntVar(&f.min, "min-instances", 0, "warm instances kept whatever the load (0: scale to zero)")
	fs.IntVar(&f.max, "max-instances", 0, fmt.Sprintf("the most warm instances (default %d)", gateway.DefaultMaxInstances))
	fs.IntVar(&f.conc, "concurrency", 0, fmt.Sprintf("calls one instance serves at once (default %d)", gateway.DefaultConcurrency))
	fs.StringVar(&f.keepAlive, "keep-alive", "", fmt.Sprintf("an instance without a call this long is released (default %s)", jobs.Duration(gateway.DefaultKeepAlive)))
	fs.IntVar(&f.maxQueue, "max-queue", 0, fmt.Sprintf("calls that may wait for a free instance; more get 429 (default %d)", gateway.DefaultMaxQueue))
}

var scalingFlagNames = []string{"min-instances", "max-instances", "concurrency", "keep-alive", "max-queue"}

// given reports whether any scaling flag was given.
func (f *scalingFlags) given() bool {
	for _, name := range scalingFlagNames {
		if f.cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// apply sets the flags given over s. A count given as 0 (or less) is
// refused: in the API a zero field means the default, which a person
// typing 0 does not mean.
func (f *scalingFlags) apply(s gateway.Scaling) (gateway.Scaling, error) {
	fs := f.cmd.Flags()
	for name, v := range map[string]int{"max-instances": f.max, "concurrency": f.conc, "max-queue": f.maxQueue} {
		if fs.Changed(name) && v < 1 {
			return s, fmt.Errorf("--%s %d: want 1 or more", name, v)
		}
	}
	if fs.Changed("min-instances") {
		s.MinInstances = f.min
	}
	if fs.Changed("max-instances") {
		s.MaxInstances = f.max
	}
	if fs.Changed("concurrency") {
		s.Concurrency = f.conc
	}
	if fs.Changed("max-queue") {
		s.MaxQueue = f.maxQueue
	}
	if fs.Changed("keep-alive") {
		if err := s.KeepAlive.UnmarshalText([]byte(f.keepAlive)); err != nil {
			return s, fmt.Errorf("--keep-alive: %w", err)
		}
	}
	return s, nil
}

func (c *cli) functionScaleCmd(a *actor) *cobra.Command {
	var f scalingFlags
	cmd := &cobra.Command{
		Use:   "scale NAME [--min-instances N] [--max-instances N] [--concurrency N] [--keep-alive D] [--max-queue N]",
		Short: "Set how a function's warm instances follow its load (flags not given stay as they are)",
		Args:  oneArg("NAME"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			fn, err := gw.GetFunction(ctx, args[0])
			if err != nil {
				return err
			}
			if !f.given() {
				return c.printFunction(fn)
			}
			sc, err := f.apply(fn.Scaling)
			if err != nil {
				return err
			}
			if fn, err = gw.SetScaling(ctx, args[0], sc); err != nil {
				return invalid("scale "+args[0]+": invalid scaling", err)
			}
			return c.printFunction(fn)
		}),
	}
	f.addFlags(cmd)
	return cmd
}

func (c *cli) functionInstancesCmd(a *actor) *cobra.Command {
	return &cobra.Command{
		Use:   "instances NAME",
		Short: "List a function's warm instances: where they run, calls in flight and served",
		Args:  oneArg("NAME"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			list, err := gw.Instances(ctx, args[0])
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				rows := make([][]string, 0, len(list))
				for _, in := range list {
					rows = append(rows, []string{strconv.Itoa(in.Revision), shortID(in.Node), strconv.Itoa(in.InFlight),
						strconv.FormatInt(in.Calls, 10), formatTime(in.StartedAt), formatTime(in.LastCall)})
				}
				return writeTable(w, []string{"REV", "NODE", "IN FLIGHT", "CALLS", "STARTED", "LAST CALL"}, rows)
			})
		}),
	}
}
