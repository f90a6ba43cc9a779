package node

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opendms/dms/types"
)

// ErrNotAdmitted means the requester is not admitted by the node's
// admission policy.
var ErrNotAdmitted = errors.New("node: requester not admitted")

// Admission is a provider's policy on who may use it: every requester
// (open), or only the PeerIDs on an allowlist. The zero value is open. An
// Admission is immutable, so it is safe for concurrent use and can be
// shared by snapshots.
//
// The node checks it three times: first in the bid pipeline, so a refused
// requester gets a Decline saying why, then at Accept and at Invocation,
// since anyone can send those without having had a bid.
type Admission struct {
	allow map[string]bool // nil: open
}

// Allowlist returns an allowlist admitting exactly the given PeerIDs. The
// node's own PeerID is not implied: add it to let the node run the jobs it
// submits itself. No PeerIDs admit nobody.
func Allowlist(peerIDs ...string) Admission {
	allow := make(map[string]bool, len(peerIDs))
	for _, p := range peerIDs {
		allow[p] = true
	}
	return Admission{allow: allow}
}

// Open reports whether every requester is admitted.
func (a Admission) Open() bool { return a.allow == nil }

// Admits reports whether peerID may use the node.
func (a Admission) Admits(peerID string) bool { return a.allow == nil || a.allow[peerID] }

// Allowed returns the allowlist, sorted; nil when open.
func (a Admission) Allowed() []string {
	if a.allow == nil {
		return nil
	}
	out := make([]string, 0, len(a.allow))
	for p := range a.allow {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// String describes the policy for logs.
func (a Admission) String() string {
	if a.Open() {
		return "open"
	}
	return "allowlist [" + strings.Join(a.Allowed(), " ") + "]"
}

// refusal is why peerID is refused, written for the submitter, or "" if it
// is admitted.
func (a Admission) refusal(peerID string) string {
	if a.Admits(peerID) {
		return ""
	}
	return fmt.Sprintf("admission: requester %s is not on this node's allowlist", peerID)
}

// check returns ErrNotAdmitted, saying why, when peerID is not admitted.
func (a Admission) check(peerID string) error {
	if a.Admits(peerID) {
		return nil
	}
	return fmt.Errorf("%w: %s is not on this node's allowlist", ErrNotAdmitted, peerID)
}

// checkAdmission is the first check of the bid pipeline.
func checkAdmission(req *types.BidRequest, s *Snapshot) []string {
	if r := s.Admission.refusal(req.Requester); r != "" {
		return []string{r}
	}
	return nil
}
