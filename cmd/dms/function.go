package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/types"
)

func (c *cli) functionCmd() *cobra.Command {
	a := new(actor)
	return accountGroup(a, "function", "Deploy functions as revisions, list, tag and call them",
		c.functionDeployCmd(a), c.functionListCmd(a), c.functionShowCmd(a), c.functionRevisionsCmd(a),
		c.functionDefaultCmd(a), c.functionTagCmd(a), c.functionScaleCmd(a), c.functionInstancesCmd(a),
		c.functionDeleteCmd(a), c.functionInvokeCmd(a))
}

// deployFlags are a deploy's flags, as given.
type deployFlags struct {
	module, executor, image string
	resources, cpu, memory  string
	timeout, maxBody        string
	env, args, tags         []string
	noDefault               bool
	scaling                 scalingFlags
}

func (f *deployFlags) addFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.module, "module", "", "the module: a local FILE (uploaded first) or the CID of one already stored")
	fs.StringVar(&f.executor, "executor", "wasm", "wasm or docker")
	fs.StringVar(&f.image, "image", "", "docker: the image name:tag (--module may then name its archive)")
	fs.StringVar(&f.resources, "resources", "", "what a call needs, such as 'cpu=500m,memory=64MiB' (cpu, memory, disk, gpus)")
	fs.StringVar(&f.cpu, "cpu", "", "cores a call needs, such as 0.5 or 500m (over --resources)")
	fs.StringVar(&f.memory, "memory", "", "memory a call needs, such as 64MiB (over --resources)")
	fs.StringVar(&f.timeout, "timeout", "", "how long a call may run, such as 30s (default: the gateway's)")
	fs.StringVar(&f.maxBody, "max-body", "", "the largest request body, such as 1MiB (default: the gateway's)")
	fs.StringArrayVar(&f.env, "env", nil, "an environment variable KEY=VALUE of every call (repeat)")
	fs.StringArrayVar(&f.args, "arg", nil, "an argument of the program (repeat, in order)")
	fs.StringArrayVar(&f.tags, "tag", nil, "a tag KEY=VALUE (repeat); given, they replace the function's tags")
	fs.BoolVar(&f.noDefault, "no-default", false, "leave the default revision as it is (the first revision is always the default)")
	f.scaling.addFlags(cmd)
}

// deploy builds the Deploy the flags ask for, but for the module, which
// moduleCID resolves.
func (f *deployFlags) deploy(name string) (gateway.Deploy, error) {
	d := gateway.Deploy{Name: name, Executor: f.executor, Image: f.image, Args: f.args, NoDefault: f.noDefault}
	var err error
	if d.Resources, err = f.needs(); err != nil {
		return d, err
	}
	if f.timeout != "" {
		if err := d.Timeout.UnmarshalText([]byte(f.timeout)); err != nil {
			return d, fmt.Errorf("--timeout: %w", err)
		}
	}
	if f.maxBody != "" {
		if d.MaxBody, err = types.ParseBytes(f.maxBody); err != nil {
			return d, fmt.Errorf("--max-body: %w", err)
		}
	}
	if d.Env, err = parsePairs("--env", f.env); err != nil {
		return d, err
	}
	if len(f.tags) > 0 {
		if d.Tags, err = mergeTags(nil, f.tags, true); err != nil {
			return d, err
		}
	}
	if f.scaling.given() {
		sc, err := f.scaling.apply(gateway.Scaling{})
		if err != nil {
			return d, err
		}
		d.Scaling = &sc
	}
	return d, nil
}

// needs is --resources, then --cpu and --memory over it.
func (f *deployFlags) needs() (types.Resources, error) {
	r, err := parseResources(f.resources)
	if err != nil {
		return r, err
	}
	if f.cpu != "" {
		if r.CPU, err = types.ParseCPU(f.cpu); err != nil {
			return r, fmt.Errorf("--cpu: %w", err)
		}
	}
	if f.memory != "" {
		if r.Memory, err = types.ParseBytes(f.memory); err != nil {
			return r, fmt.Errorf("--memory: %w", err)
		}
	}
	return r, nil
}

// parseResources reads "cpu=500m,memory=64MiB,disk=1GiB,gpus=1" with the
// parsers of a job spec's resources.
func parseResources(s string) (types.Resources, error) {
	var r types.Resources
	if s == "" {
		return r, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		var err error
		switch {
		case !ok:
			err = errors.New("want NAME=QUANTITY")
		case k == "cpu":
			r.CPU, err = types.ParseCPU(v)
		case k == "memory":
			r.Memory, err = types.ParseBytes(v)
		case k == "disk":
			r.Disk, err = types.ParseBytes(v)
		case k == "gpus":
			r.GPUs, err = strconv.Atoi(v)
		default:
			err = fmt.Errorf("unknown resource %q (want cpu, memory, disk or gpus)", k)
		}
		if err != nil {
			return r, fmt.Errorf("--resources %q: %w", part, err)
		}
	}
	return r, nil
}

// moduleCID returns --module as a CID: a local file is uploaded first.
func moduleCID(ctx context.Context, gw *gateway.Client, module string) (string, error) {
	if module == "" {
		return "", nil // docker with --image alone; the gateway says if it is missing
	}
	f, err := os.Open(module)
	if errors.Is(err, fs.ErrNotExist) {
		if _, cerr := cid.Decode(module); cerr == nil {
			return module, nil
		}
		return "", fmt.Errorf("--module %s: no such file, and not a CID", module)
	}
	if err != nil {
		return "", fmt.Errorf("--module: %w", err)
	}
	defer f.Close()
	id, err := gw.PutModule(ctx, f)
	if err != nil {
		return "", fmt.Errorf("uploading --module %s: %w", module, err)
	}
	return id, nil
}

func (c *cli) functionDeployCmd(a *actor) *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "deploy NAME --module FILE|CID",
		Short: "Deploy the function's next revision (its first makes the function)",
		Args:  oneArg("NAME"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			d, err := f.deploy(args[0])
			if err != nil {
				return err
			}
			if d.Module, err = moduleCID(ctx, gw, f.module); err != nil {
				return err
			}
			rev, err := gw.Deploy(ctx, d)
			if err != nil {
				return invalid("deploy "+d.Name+": invalid deploy", err)
			}
			return c.print(rev, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deployed %s revision %d%s\n", rev.Function, rev.Number, defaultNote(d, rev))
				return err
			})
		}),
	}
	f.addFlags(cmd)
	return cmd
}

// defaultNote says whether a deploy's revision became the default.
func defaultNote(d gateway.Deploy, rev gateway.Revision) string {
	if d.NoDefault && rev.Number > 1 {
		return " (the default revision is unchanged)"
	}
	return " (now the default)"
}

var functionHeader = []string{"NAME", "DEFAULT", "LATEST", "CALLS", "TAGS", "UPDATED"}

func functionRows(list []gateway.Function) [][]string {
	rows := make([][]string, 0, len(list))
	for _, f := range list {
		rows = append(rows, []string{f.Name, strconv.Itoa(f.DefaultRevision), strconv.Itoa(f.LatestRevision),
			strconv.FormatInt(f.Calls, 10), formatTags(f.Tags), formatTime(f.UpdatedAt)})
	}
	return rows
}

func (c *cli) functionListCmd(a *actor) *cobra.Command {
	return taggedList[gateway.Function]{
		short: "List the account's functions: filter by tag, search, sort, group by a tag", sorts: "name, created or calls",
		list: (*gateway.Client).ListFunctions, groups: (*gateway.Client).ListFunctionGroups,
		header: functionHeader, rows: functionRows,
	}.command(c, a)
}

func functionFields(f gateway.Function) []field {
	return []field{
		kv("name", f.Name), kv("default revision", strconv.Itoa(f.DefaultRevision)),
		kv("latest revision", strconv.Itoa(f.LatestRevision)), kv("calls", strconv.FormatInt(f.Calls, 10)),
		kv("tags", formatTags(f.Tags)), kv("scaling", formatScaling(f.Scaling)),
		kv("created", formatTime(f.CreatedAt)), kv("updated", formatTime(f.UpdatedAt)),
	}
}

// formatScaling is a function's scaling on one line.
func formatScaling(s gateway.Scaling) string {
	return fmt.Sprintf("%d to %d instances of %d calls at once, released after %s idle, queue of %d",
		s.MinInstances, s.MaxInstances, s.Concurrency, s.KeepAlive, s.MaxQueue)
}

// printFunction prints a function's fields, or its JSON.
func (c *cli) printFunction(f gateway.Function) error {
	return c.print(f, func(w io.Writer) error { return writeFields(w, functionFields(f)) })
}

func (c *cli) functionShowCmd(a *actor) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a function: its default and latest revisions, calls and tags",
		Args:  oneArg("NAME"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			f, err := gw.GetFunction(ctx, args[0])
			if err != nil {
				return err
			}
			return c.printFunction(f)
		}),
	}
}

func (c *cli) functionRevisionsCmd(a *actor) *cobra.Command {
	return &cobra.Command{
		Use:   "revisions NAME",
		Short: "List a function's revisions",
		Args:  oneArg("NAME"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			list, err := gw.Revisions(ctx, args[0])
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error {
				return writeTable(w, []string{"REV", "EXECUTOR", "MODULE", "RESOURCES", "TIMEOUT", "MAX BODY", "CREATED"}, revisionRows(list))
			})
		}),
	}
}

func revisionRows(list []gateway.Revision) [][]string {
	rows := make([][]string, 0, len(list))
	for _, r := range list {
		module := orDash(shortID(r.Module))
		if r.Image != "" {
			module = r.Image
		}
		rows = append(rows, []string{strconv.Itoa(r.Number), r.Executor, module, orDefault(r.Resources.IsZero(), r.Resources.String()),
			orDefault(r.Timeout == 0, r.Timeout.String()), orDefault(r.MaxBody == 0, r.MaxBody.String()), formatTime(r.CreatedAt)})
	}
	return rows
}

// orDefault is s, or "default" when zero: a zero quantity of a revision
// stands for the gateway's default.
func orDefault(zero bool, s string) string {
	if zero {
		return "default"
	}
	return s
}

func (c *cli) functionDefaultCmd(a *actor) *cobra.Command {
	return &cobra.Command{
		Use:   "default NAME REV",
		Short: "Switch the function's default revision: calls without --rev run it",
		Args:  namedArgs("NAME", "REV"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			rev, err := strconv.Atoi(args[1])
			if err != nil || rev < 1 {
				return fmt.Errorf("revision %q: want a revision number such as 2 (see `dms function revisions %s`)", args[1], args[0])
			}
			f, err := gw.SetDefault(ctx, args[0], rev)
			if err != nil {
				return err
			}
			return c.printFunction(f)
		}),
	}
}

func (c *cli) functionTagCmd(a *actor) *cobra.Command {
	var replace bool
	cmd := &cobra.Command{
		Use:   "tag NAME KEY=VALUE...",
		Short: "Set a function's tags: merged into its tags (KEY= removes KEY), or --replace them",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return fmt.Errorf("%s takes NAME and at least one KEY=VALUE (usage: %s)", cmd.CommandPath(), cmd.UseLine())
			}
			return nil
		},
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			f, err := gw.GetFunction(ctx, args[0])
			if err != nil {
				return err
			}
			tags, err := mergeTags(f.Tags, args[1:], replace)
			if err != nil {
				return err
			}
			if f, err = gw.SetTags(ctx, args[0], tags); err != nil {
				return invalid("tag "+args[0]+": invalid tags", err)
			}
			return c.printFunction(f)
		}),
	}
	cmd.Flags().BoolVar(&replace, "replace", false, "replace all the function's tags with those given")
	return cmd
}

func (c *cli) functionDeleteCmd(a *actor) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a function, its revisions and its endpoints (its tasks stay until their retention ends)",
		Args:  oneArg("NAME"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			return c.deleted(gw.DeleteFunction(ctx, args[0]), "function", args[0])
		}),
	}
}

// deleted reports that the named thing was deleted, unless err says it
// was not.
func (c *cli) deleted(err error, kind, name string) error {
	if err != nil {
		return err
	}
	return c.print(map[string]any{"name": name, "deleted": true}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "deleted %s %s\n", kind, name)
		return err
	})
}
