package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/gateway"
)

func (c *cli) tagCmd() *cobra.Command {
	a := new(actor)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the account's tags in use: key, value and what carries them",
		Args:  cobra.NoArgs,
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, _ []string) error {
			tags, err := gw.ListTags(ctx)
			if err != nil {
				return err
			}
			return c.print(tags, func(w io.Writer) error {
				return writeTable(w, []string{"KEY", "VALUE", "FUNCTIONS", "ENDPOINTS"}, tagRows(tags))
			})
		}),
	}
	return accountGroup(a, "tag", "The key=value tags of an account's functions and endpoints", list)
}

func tagRows(list []gateway.Tag) [][]string {
	rows := make([][]string, 0, len(list))
	for _, t := range list {
		rows = append(rows, []string{t.Key, t.Value, strconv.Itoa(t.Functions), strconv.Itoa(t.Endpoints)})
	}
	return rows
}

// parsePairs reads KEY=VALUE arguments of flag (--tag, --env) into a map;
// a value may be empty, a key may not.
func parsePairs(flag string, args []string) (map[string]string, error) {
	m := make(map[string]string, len(args))
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, arg)
		}
		m[k] = v
	}
	return m, nil
}

// mergeTags applies KEY=VALUE arguments to tags: a value sets its key,
// an empty one ("KEY=") removes it. With replace, tags start empty.
func mergeTags(tags map[string]string, args []string, replace bool) (map[string]string, error) {
	changes, err := parsePairs("--tag", args)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if !replace {
		maps.Copy(out, tags)
	}
	for k, v := range changes {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out, nil
}

// formatTags writes tags as "k=v k=v", sorted by key; "-" when none.
func formatTags(tags map[string]string) string {
	parts := make([]string, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		parts = append(parts, k+"="+tags[k])
	}
	return orDash(strings.Join(parts, " "))
}

// listFlags filter, search, sort and group a list of functions or
// endpoints.
type listFlags struct {
	tags    []string
	search  string
	sort    string
	groupBy string
}

// addFlags adds the flags; sorts names the orders the list knows.
func (f *listFlags) addFlags(cmd *cobra.Command, sorts string) {
	fs := cmd.Flags()
	fs.StringArrayVar(&f.tags, "tag", nil, "only those with tag KEY=VALUE (repeat: all must match)")
	fs.StringVar(&f.search, "search", "", "only those whose name, a tag key or a tag value contains TEXT (any case)")
	fs.StringVar(&f.sort, "sort", "name", "sort by "+sorts)
	fs.StringVar(&f.groupBy, "group-by", "", "group by the value of tag KEY, a table per value")
}

func (f *listFlags) query() (gateway.Query, error) {
	tags, err := parsePairs("--tag", f.tags)
	if err != nil {
		return gateway.Query{}, err
	}
	return gateway.Query{Tags: tags, Search: f.search, Sort: f.sort}, nil
}

// taggedList lists functions or endpoints: one query, as groups or as a
// list, printed as tables.
type taggedList[T any] struct {
	short, sorts string
	list         func(gw *gateway.Client, ctx context.Context, q gateway.Query) ([]T, error)
	groups       func(gw *gateway.Client, ctx context.Context, q gateway.Query, key string) ([]gateway.Group[T], error)
	header       []string
	rows         func([]T) [][]string
}

// command is the `list` subcommand of l.
func (l taggedList[T]) command(c *cli, a *actor) *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: l.short,
		Args:  cobra.NoArgs,
		RunE: c.acting(a, func(ctx context.Context, gw *gateway.Client, _ []string) error {
			q, err := lf.query()
			if err != nil {
				return err
			}
			if lf.groupBy != "" {
				groups, err := l.groups(gw, ctx, q, lf.groupBy)
				if err != nil {
					return err
				}
				return printGroups(c, lf.groupBy, groups, l.header, l.rows)
			}
			list, err := l.list(gw, ctx, q)
			if err != nil {
				return err
			}
			return c.print(list, func(w io.Writer) error { return writeTable(w, l.header, l.rows(list)) })
		}),
	}
	lf.addFlags(cmd, l.sorts)
	return cmd
}

// printGroups prints each group under a heading "KEY=VALUE" ("KEY unset"
// for those without the tag), or the groups' JSON.
func printGroups[T any](c *cli, key string, groups []gateway.Group[T], header []string, rows func([]T) [][]string) error {
	return c.print(groups, func(w io.Writer) error {
		for i, g := range groups {
			heading := key + "=" + g.Value
			if g.Value == "" {
				heading = key + " unset"
			}
			if i > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintln(w, heading)
			if err := writeTable(w, header, rows(g.Items)); err != nil {
				return err
			}
		}
		return nil
	})
}
