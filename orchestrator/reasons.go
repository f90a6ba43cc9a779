package orchestrator

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// maxReasons bounds how many distinct reasons a failure message lists.
const maxReasons = 5

// noBidReason explains a window that closed without an acceptable bid:
// "no node bid: 5 nodes declined: memory: need 900 TiB, offered 8 GiB (5 nodes)".
// The window is named only when it ran out; when every node waited for
// answered, the auction ended at once and waiting longer would not help.
func (a *Auction) noBidReason() string {
	var parts []string
	within := ""
	if a.ranOut {
		within = " within " + a.window.String()
	}
	head := "no node bid" + within
	if a.avoided > 0 {
		head = "no acceptable bid" + within
		parts = append(parts, plural(a.avoided, "bid")+" from nodes avoided (other replicas of the unit) or distrusted")
	}
	if n := len(a.bids) - a.avoided; n > 0 {
		head = "no acceptable bid" + within
		why := "malformed"
		if a.rank.MaxPrice > 0 {
			why = fmt.Sprintf("priced above %s or malformed", a.rank.MaxPrice)
		}
		parts = append(parts, plural(n, "bid")+" "+why)
	}
	if a.invalid > 0 {
		parts = append(parts, plural(a.invalid, "bid")+" naming no allocation ID or a repeated one")
	}
	if len(a.declines) > 0 {
		parts = append(parts, fmt.Sprintf("%s declined: %s", plural(len(a.declines), "node"), a.declineSummary()))
	}
	switch silent := len(a.unanswered()); {
	case len(a.answered) == 0:
		parts = append(parts, "no node answered")
	case silent > 0:
		parts = append(parts, fmt.Sprintf("%s did not answer", plural(silent, "node")))
	}
	return head + ": " + strings.Join(parts, "; ")
}

// declineSummary groups identical decline reasons, most common first, each
// with the number of nodes that gave it.
func (a *Auction) declineSummary() string {
	count := make(map[string]int)
	for _, d := range a.declines {
		reasons := slices.Compact(slices.Sorted(slices.Values(d.Reasons)))
		if len(reasons) == 0 {
			reasons = []string{"no reason given"}
		}
		for _, r := range reasons {
			count[r]++
		}
	}
	keys := slices.Collect(maps.Keys(count))
	slices.SortFunc(keys, func(x, y string) int {
		return cmp.Or(cmp.Compare(count[y], count[x]), cmp.Compare(x, y))
	})
	items := make([]string, 0, min(len(keys), maxReasons))
	for _, k := range keys[:min(len(keys), maxReasons)] {
		items = append(items, fmt.Sprintf("%s (%s)", k, plural(count[k], "node")))
	}
	if extra := len(keys) - maxReasons; extra > 0 {
		items = append(items, fmt.Sprintf("and %s", plural(extra, "other reason")))
	}
	return strings.Join(items, "; ")
}

// noConfirmReason explains why no candidate ended up holding the job.
func (a *Auction) noConfirmReason() string {
	items := make([]string, 0, min(len(a.sent), maxReasons))
	for _, o := range a.sent[:min(len(a.sent), maxReasons)] {
		items = append(items, o.outcome)
	}
	if extra := len(a.sent) - maxReasons; extra > 0 {
		items = append(items, fmt.Sprintf("and %s", plural(extra, "other bidder")))
	}
	return fmt.Sprintf("none of %s confirmed: %s", plural(len(a.sent), "bidder"), strings.Join(items, "; "))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func orUnknown(reason string) string {
	if reason == "" {
		return "no reason given"
	}
	return reason
}
