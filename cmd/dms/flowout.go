package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

// maxShownOutput is the largest output `dms flow run` prints whole.
const maxShownOutput = 64 << 10

// printOutputs writes each output of a completed flow on stdout under a
// line "==> NAME <==": its content when it is text of at most
// maxShownOutput bytes, else its CID and size.
func (c *cli) printOutputs(ctx context.Context, svc api.Service, id string, outs []api.Output) error {
	for _, o := range outs {
		fmt.Fprintf(c.stdout, "==> %s <==\n", o.Name)
		if o.Size > maxShownOutput {
			fmt.Fprintf(c.stdout, "%s (%s: larger than %s; save it with `dms flow outputs %s --out DIR`)\n",
				o.CID, types.Bytes(o.Size), types.Bytes(maxShownOutput), id)
			continue
		}
		data, err := svc.GetBlob(ctx, o.CID)
		if err != nil {
			return fmt.Errorf("fetching output %s (%s): %w", o.Name, o.CID, err)
		}
		if len(data) > maxShownOutput || !isText(data) {
			fmt.Fprintf(c.stdout, "%s (%s, not text; save it with `dms flow outputs %s --out DIR`)\n", o.CID, types.Bytes(len(data)), id)
			continue
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		if _, err := c.stdout.Write(data); err != nil {
			return err
		}
	}
	return nil
}

// isText reports whether data reads as UTF-8 text without NUL bytes.
func isText(data []byte) bool {
	return utf8.Valid(data) && bytes.IndexByte(data, 0) < 0
}

func (c *cli) flowOutputsCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "outputs ID",
		Short: "List a completed flow's outputs; with --out DIR, save each as DIR/NAME",
		Long: `List a completed flow's outputs: name, CID, size and a node that holds it.

With --out DIR, fetch each and write it to DIR/NAME, a "/" in a name making
directories (count.stdout/part-0.txt is DIR/count.stdout/part-0.txt). A name
that would land outside DIR (absolute, or with "..") is refused, and nothing is
written.`,
		Args: oneArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			f, err := svc.GetFlow(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := requireOutputs(f); err != nil {
				return err
			}
			if out == "" {
				return c.print(f.Outputs, func(w io.Writer) error {
					return writeTable(w, []string{"NAME", "CID", "SIZE", "NODE"}, outputRows(f.Outputs))
				})
			}
			saved, err := saveOutputs(cmd.Context(), svc, f.Outputs, out)
			if err != nil {
				return err
			}
			return c.print(saved, func(w io.Writer) error {
				for _, s := range saved {
					fmt.Fprintf(w, "%s  %s\n", s.Path, types.Bytes(s.Size))
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to save the outputs in (made if missing)")
	return cmd
}

// requireOutputs explains why a flow has no outputs yet, or none at all.
func requireOutputs(f api.Flow) error {
	switch {
	case f.State == api.FlowCompleted:
		return nil
	case !api.FlowEnded(f.State):
		return fmt.Errorf("flow %s is %s: no outputs yet (follow it with `dms flow status %s --watch`)", f.ID, f.State, f.ID)
	}
	return fmt.Errorf("%w: it has no outputs", flowEndedError(f))
}

func outputRows(outs []api.Output) [][]string {
	rows := make([][]string, 0, len(outs))
	for _, o := range outs {
		rows = append(rows, []string{o.Name, o.CID, types.Bytes(o.Size).String(), orDash(shortID(o.Node))})
	}
	return rows
}

// savedOutput is an output written to a file.
type savedOutput struct {
	api.Output
	Path string `json:"path"`
}

// saveOutputs writes each output to dir/NAME. Every name is checked
// before anything is written; the files are written through an os.Root,
// so that a symbolic link already in dir cannot lead them out of it.
func saveOutputs(ctx context.Context, svc api.Service, outs []api.Output, dir string) ([]savedOutput, error) {
	for _, o := range outs {
		if err := checkOutputName(o.Name); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	saved := make([]savedOutput, 0, len(outs))
	for _, o := range outs {
		data, err := svc.GetBlob(ctx, o.CID)
		if err != nil {
			return saved, fmt.Errorf("fetching output %s (%s): %w", o.Name, o.CID, err)
		}
		name := filepath.FromSlash(o.Name)
		if d := filepath.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return saved, fmt.Errorf("output %s: %w", o.Name, err)
			}
		}
		if err := root.WriteFile(name, data, 0o644); err != nil {
			return saved, fmt.Errorf("output %s: %w", o.Name, err)
		}
		o.Size = int64(len(data))
		saved = append(saved, savedOutput{Output: o, Path: filepath.Join(dir, name)})
	}
	return saved, nil
}

// checkOutputName refuses an output name that is not a clean relative
// path: it would be written outside the directory, or over it.
func checkOutputName(name string) error {
	if name == "" || name == "." || path.Clean(name) != name || !filepath.IsLocal(filepath.FromSlash(name)) {
		return fmt.Errorf("output name %q would be written outside the directory: refused, nothing written", name)
	}
	return nil
}
