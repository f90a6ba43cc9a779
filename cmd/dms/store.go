package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

func (c *cli) storeCmd() *cobra.Command {
	return groupCmd("store", "Show, collect and pin what the running daemon keeps on disk",
		c.storeInfoCmd(), c.storeGCCmd(), c.storePinCmd(true), c.storePinCmd(false))
}

func (c *cli) storeInfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the node's blobs against their budget, its records, its home's size and the last collection",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			info, err := svc.StoreInfo(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(info, func(w io.Writer) error { return writeFields(w, storeFields(info)) })
		},
	}
}

func (c *cli) storeGCCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Collect now: blobs over the budget, records past retention, the database's value log",
		Long: `Collect now, as the daemon does on its own when its blobs go over
store.max_bytes and every hour: the least recently used blobs that no
unfinished job, live allocation or pin references, and that were not used
within store.min_blob_age, are removed until the rest fit the budget;
records of jobs and allocations that ended more than store.retention ago
keep only their summary. Prints what the collection did.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			col, err := svc.CollectGarbage(cmd.Context())
			if err != nil {
				return err
			}
			if err := c.print(col, func(w io.Writer) error { return writeFields(w, collectionFields(col)) }); err != nil {
				return err
			}
			if col.Error != "" {
				return exitError{1} // printed with the rest
			}
			return nil
		},
	}
}

// storePinCmd is `dms store pin CID` (pin) or `dms store unpin CID`.
func (c *cli) storePinCmd(pin bool) *cobra.Command {
	use, short, done := "unpin CID", "Let a pinned blob be collected again", "unpinned"
	if pin {
		use, short, done = "pin CID", "Keep a blob whatever the budget (fetched first if the node does not hold it)", "pinned"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  oneArg("CID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.client()
			if err != nil {
				return err
			}
			do := svc.Unpin
			if pin {
				do = svc.Pin
			}
			if err := do(cmd.Context(), args[0]); err != nil {
				return err
			}
			return c.print(map[string]any{"cid": args[0], "pinned": pin}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s %s\n", done, args[0])
				return err
			})
		},
	}
}

func storeFields(s api.StoreInfo) []field {
	fs := []field{
		kv("home", fmt.Sprintf("%s, %s of a %s budget (%s)", s.Home, types.Bytes(s.HomeBytes), types.Bytes(s.MaxBytes), percent(s.HomeBytes, s.MaxBytes))),
		kv("blobs", fmt.Sprintf("%d, %s", s.Blobs, types.Bytes(s.BlobBytes))),
		kv("min blob age", formatMillis(s.MinBlobAgeMillis)),
		kv("retention", formatMillis(s.RetentionMillis)),
		{"pins", orNone(s.Pins)},
	}
	var records []string
	for _, kind := range slices.Sorted(maps.Keys(s.Records)) {
		records = append(records, kind+" "+strconv.Itoa(s.Records[kind]))
	}
	fs = append(fs, kv("records", orDash(strings.Join(records, ", "))))
	if s.LastCollection == nil {
		return append(fs, kv("last collection", "none yet"))
	}
	for _, f := range collectionFields(*s.LastCollection) {
		f.key = "last collection " + f.key
		fs = append(fs, f)
	}
	return fs
}

func collectionFields(col api.Collection) []field {
	fs := []field{
		kv("at", formatTime(col.At)+" (took "+formatMillis(col.DurationMillis)+")"),
		kv("removed", fmt.Sprintf("%d blobs, %s freed: %s -> %s", col.BlobsRemoved, types.Bytes(col.FreedBytes), types.Bytes(col.BlobBytesBefore), types.Bytes(col.BlobBytesAfter))),
		kv("kept", fmt.Sprintf("%d referenced, %d too recent", col.Referenced, col.Recent)),
		kv("compacted", fmt.Sprintf("%d records, %d value-log files rewritten", col.RecordsCompacted, col.ValueLogRewrites)),
	}
	if col.Error != "" {
		fs = append(fs, kv("error", col.Error))
	}
	return fs
}

// percent is part of whole, as "42%"; "-" without a whole.
func percent(part, whole int64) string {
	if whole <= 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 0, 64) + "%"
}
