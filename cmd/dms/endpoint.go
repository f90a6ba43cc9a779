package main

import (
	"context"
	"errors"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opendms/dms/dms/gateway"
)

func (c *cli) endpointCmd() *cobra.Command {
	a := new(actor)
	return accountGroup(a, "endpoint", "Publish functions at /e/NAME/ on the gateway, with policies",
		c.endpointCreateCmd(a), c.endpointListCmd(a), c.endpointShowCmd(a), c.endpointUpdateCmd(a), c.endpointDeleteCmd(a))
}

// endpointFlags are the flags of endpoint create and update, as given.
type endpointFlags struct {
	function            string
	rev                 int
	allowIPs, windows   []string
	quota               int
	zone, auth          string
	tags                []string
	clearIPs, clearWins bool
}

func (f *endpointFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.function, "function", "", "the function it calls")
	fs.IntVar(&f.rev, "rev", 0, "the revision it calls (0: the function's default at each call)")
	fs.StringArrayVar(&f.allowIPs, "allow-ip", nil, "a CIDR or address callers must come from (repeat; none: any)")
	fs.StringArrayVar(&f.windows, "window", nil, "a weekly opening, such as 'Mon-Fri 08:00-18:00 Europe/Berlin' (repeat; none: always open)")
	fs.IntVar(&f.quota, "daily-quota", 0, "calls a day, counted from midnight of --zone (0: no quota)")
	fs.StringVar(&f.zone, "zone", "", "the IANA time zone of the quota's midnight (default: the first window's, else UTC)")
	fs.StringVar(&f.auth, "auth", "none", "none, or key: callers send a key of this account")
	fs.StringArrayVar(&f.tags, "tag", nil, "a tag KEY=VALUE (repeat; on update merged, KEY= removes KEY)")
}

// apply changes spec by the flags given (fs.Changed): lists grow with
// --allow-ip and --window after the --clear- flags empty them, tags merge.
func (f *endpointFlags) apply(fs *pflag.FlagSet, spec *gateway.EndpointSpec) error {
	set := func(name string, apply func()) {
		if fs.Changed(name) {
			apply()
		}
	}
	set("function", func() { spec.Function = f.function })
	set("rev", func() { spec.Revision = f.rev })
	set("daily-quota", func() { spec.DailyQuota = f.quota })
	set("zone", func() { spec.Zone = f.zone })
	set("auth", func() { spec.Auth = f.auth })
	if f.clearIPs {
		spec.AllowIPs = nil
	}
	if f.clearWins {
		spec.Windows = nil
	}
	spec.AllowIPs = append(spec.AllowIPs, f.allowIPs...)
	spec.Windows = append(spec.Windows, f.windows...)
	if len(f.tags) == 0 {
		return nil
	}
	tags, err := mergeTags(spec.Tags, f.tags, false)
	spec.Tags = tags
	return err
}

func (c *cli) endpointCreateCmd(a *actor) *cobra.Command {
	var f endpointFlags
	cmd := &cobra.Command{
		Use:   "create NAME --function F",
		Short: "Publish a function at /e/NAME/ on the gateway",
		Args:  oneArg("NAME"),
	}
	cmd.RunE = c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
		if f.function == "" {
			return errors.New("endpoint create needs --function F: the function it calls")
		}
		return c.saveEndpoint(ctx, &f, cmd.Flags(), gateway.EndpointSpec{Name: args[0], Auth: f.auth}, gw.CreateEndpoint)
	})
	f.addFlags(cmd.Flags())
	return cmd
}

func (c *cli) endpointUpdateCmd(a *actor) *cobra.Command {
	var f endpointFlags
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change an endpoint: only the flags given change; its quota count stays",
		Args:  oneArg("NAME"),
	}
	cmd.RunE = c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
		e, err := gw.GetEndpoint(ctx, args[0])
		if err != nil {
			return err
		}
		return c.saveEndpoint(ctx, &f, cmd.Flags(), e.EndpointSpec, gw.UpdateEndpoint)
	})
	fs := cmd.Flags()
	f.addFlags(fs)
	fs.BoolVar(&f.clearIPs, "clear-allow-ip", false, "empty the allowlist (before adding any --allow-ip)")
	fs.BoolVar(&f.clearWins, "clear-windows", false, "remove every window (before adding any --window)")
	return cmd
}

// saveEndpoint changes spec by the flags given, sends it with save
// (create or update) and prints the endpoint saved.
func (c *cli) saveEndpoint(ctx context.Context, f *endpointFlags, fs *pflag.FlagSet, spec gateway.EndpointSpec,
	save func(context.Context, gateway.EndpointSpec) (gateway.Endpoint, error)) error {
	if err := f.apply(fs, &spec); err != nil {
		return err
	}
	e, err := save(ctx, spec)
	if err != nil {
		return invalid("endpoint "+spec.Name+": invalid endpoint", err)
	}
	return c.printEndpoint(e)
}

var endpointHeader = []string{"NAME", "PATH", "FUNCTION", "REV", "AUTH", "TODAY", "QUOTA", "TAGS"}

func endpointRows(list []gateway.Endpoint) [][]string {
	rows := make([][]string, 0, len(list))
	for _, e := range list {
		rows = append(rows, []string{e.Name, e.Path, e.Function, revisionText(e.Revision), e.Auth,
			strconv.Itoa(e.Today), quotaText(e.DailyQuota), formatTags(e.Tags)})
	}
	return rows
}

func revisionText(rev int) string {
	if rev == 0 {
		return "default"
	}
	return strconv.Itoa(rev)
}

func quotaText(quota int) string {
	if quota == 0 {
		return "none"
	}
	return strconv.Itoa(quota)
}

func (c *cli) endpointListCmd(a *actor) *cobra.Command {
	return taggedList[gateway.Endpoint]{
		short: "List the account's endpoints: filter by tag, search, sort, group by a tag", sorts: "name or created",
		list: (*gateway.Client).ListEndpoints, groups: (*gateway.Client).ListEndpointGroups,
		header: endpointHeader, rows: endpointRows,
	}.command(c, a)
}

func endpointFields(e gateway.Endpoint) []field {
	remaining := "-"
	if e.Remaining != nil {
		remaining = strconv.Itoa(*e.Remaining)
	}
	return []field{
		kv("name", e.Name), kv("path", e.Path), kv("function", e.Function), kv("revision", revisionText(e.Revision)),
		kv("auth", e.Auth), field{"allow ips", orList(e.AllowIPs, "any")}, field{"windows", orList(e.Windows, "always open")},
		kv("daily quota", quotaText(e.DailyQuota)), kv("zone", orDash(e.Zone)),
		kv("today", strconv.Itoa(e.Today)), kv("remaining", remaining), kv("resets at", formatTime(e.ResetsAt)),
		kv("tags", formatTags(e.Tags)), kv("created", formatTime(e.CreatedAt)), kv("updated", formatTime(e.UpdatedAt)),
	}
}

// printEndpoint prints an endpoint's fields, or its JSON.
func (c *cli) printEndpoint(e gateway.Endpoint) error {
	return c.print(e, func(w io.Writer) error { return writeFields(w, endpointFields(e)) })
}

func (c *cli) endpointShowCmd(a *actor) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show an endpoint: its policies, and today's calls against its quota",
		Args:  oneArg("NAME"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			e, err := gw.GetEndpoint(ctx, args[0])
			if err != nil {
				return err
			}
			return c.printEndpoint(e)
		}),
	}
}

func (c *cli) endpointDeleteCmd(a *actor) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an endpoint: /e/NAME/ answers 404 at once",
		Args:  oneArg("NAME"),
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
			return c.deleted(gw.DeleteEndpoint(ctx, args[0]), "endpoint", args[0])
		}),
	}
}
