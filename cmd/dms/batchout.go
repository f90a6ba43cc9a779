package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

func (c *cli) batchResultsCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "results ID",
		Short: "List a batch's units and their results; with --out DIR, save each completed unit's stdout and files",
		Long: `List a batch's units: index, value ({{unit}}), state, replicas issued, the
node that returned the verdict, and the verdict's stdout CID or why the unit
failed (--output json: every BatchUnit, with its result and replicas).

With --out DIR, fetch the result of each completed unit and write its stdout
to DIR/VALUE/stdout and each of its output files to DIR/VALUE/outputs/PATH;
each failed unit is listed on stderr with its reason. A name that would land
outside DIR is refused before anything is written. Exit status: 1 if a unit
failed. A batch still running has its completed units saved, the others not.`,
		Args: oneArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			units, err := allUnits(cmd.Context(), svc, args[0])
			if err != nil {
				return err
			}
			if out == "" {
				return c.print(units, func(w io.Writer) error {
					return writeTable(w, []string{"INDEX", "VALUE", "STATE", "REPLICAS", "NODE", "RESULT"}, unitRows(units))
				})
			}
			return c.saveResults(cmd.Context(), svc, args[0], units, out)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to save the completed units' results in (made if missing)")
	return cmd
}

// allUnits fetches every unit of a batch, a page at a time.
func allUnits(ctx context.Context, svc api.BatchService, id string) ([]api.BatchUnit, error) {
	var units []api.BatchUnit
	for {
		page, err := svc.BatchUnits(ctx, id, len(units), api.MaxUnitsPage)
		if err != nil {
			return nil, err
		}
		units = append(units, page...)
		if len(page) < api.MaxUnitsPage {
			return units, nil
		}
	}
}

func unitRows(units []api.BatchUnit) [][]string {
	rows := make([][]string, 0, len(units))
	for _, u := range units {
		result := "-"
		switch {
		case u.Result != nil:
			result = u.Result.Stdout
			if n := len(u.Result.Files); n > 0 {
				result += fmt.Sprintf(" (+%d files)", n)
			}
		case u.Failure != "":
			result = u.Failure
		}
		rows = append(rows, []string{strconv.Itoa(u.Index), u.Value, u.State, strconv.Itoa(len(u.Replicas)), orDash(shortID(u.Node)), result})
	}
	return rows
}

// saveResults writes the completed units' results under dir, lists the
// failed units on stderr, and fails if there are any.
func (c *cli) saveResults(ctx context.Context, svc api.Service, id string, units []api.BatchUnit, dir string) error {
	var outs []api.Output
	var failed, pending int
	for _, u := range units {
		switch {
		case u.Result != nil:
			outs = append(outs, unitOutputs(u)...)
		case u.State == api.BatchFailed:
			failed++
			fmt.Fprintf(c.stderr, "unit %d (%s) failed: %s\n", u.Index, u.Value, u.Failure)
		default:
			pending++
		}
	}
	saved, err := saveOutputs(ctx, svc, outs, dir)
	if err != nil {
		return err
	}
	var size int64
	for _, s := range saved {
		size += s.Size
	}
	done := len(units) - failed - pending
	err = c.print(units, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "saved the results of %d units in %s: %d files, %s\n", done, dir, len(saved), types.Bytes(size))
		return err
	})
	if err != nil {
		return err
	}
	if pending > 0 {
		fmt.Fprintf(c.stderr, "batch %s: %d units not ended yet (follow it with `dms batch status %s --watch`)\n", id, pending, id)
	}
	if failed > 0 {
		return fmt.Errorf("batch %s: %d of %d units failed (listed above)", id, failed, len(units))
	}
	return nil
}

// unitOutputs names a completed unit's stdout VALUE/stdout and its files
// VALUE/outputs/PATH.
func unitOutputs(u api.BatchUnit) []api.Output {
	r := u.Result
	outs := []api.Output{{Name: u.Value + "/stdout", CID: r.Stdout}}
	for _, p := range slices.Sorted(maps.Keys(r.Files)) {
		outs = append(outs, api.Output{Name: u.Value + "/outputs/" + p, CID: r.Files[p]})
	}
	return outs
}
