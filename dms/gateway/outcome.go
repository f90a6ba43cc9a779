package gateway

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/cgi"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// ending is what the gateway knows of a finished job when it decides
// what the call answers.
type ending struct {
	Job     api.Job // in a terminal state
	Stdout  []byte  // read when the job completed with exit code 0
	Stderr  []byte  // read when it completed with another
	ReadErr error   // reading Stdout failed
}

// verdict is how a call ends: its task's final state and what it
// records, and the response or the error the caller gets.
type verdict struct {
	State    TaskState
	Err      error  // the api sentinel of a failure or a stop; nil when completed, or when nobody is answered
	Reason   string // why it failed or stopped
	Response cgi.Response
	Node     string
	ExitCode *int
	Output   string // CID of the stdout a completed task answered with
}

// Bounds of the stderr a non-zero exit quotes.
const (
	stderrLines = 3
	stderrBytes = 512
)

// classify decides how a call ends from its finished job. It is the one
// place of the rules:
//   - cancelled (StopTask, or someone with the node's API): stopped, 409.
//   - failed, not placed (no node bid, no acceptable bid, no bidder
//     confirmed, no capacity freed up): 503 with the summed reasons.
//   - failed on its timeout (jobs.ErrTimeout on the node): 504.
//   - failed otherwise (a trap, its memory limit, a bad module, nodes
//     lost past the reschedules): 502 with the job's reason.
//   - completed with a non-zero exit code: 502 with the code and the head
//     of stderr; without a result, or with stdout cut at the node's
//     output limit or unreadable: 502.
//   - completed with exit code 0: stdout read as CGI output; malformed
//     output (cgi.ErrBadOutput) 502, else completed with the function's
//     own status.
func classify(e ending) verdict {
	j := e.Job
	v := verdict{State: TaskFailed, Err: api.ErrBadGateway, Node: j.Node, Reason: redact(j.Reason)}
	if j.Result != nil {
		code := j.Result.ExitCode
		v.ExitCode = &code
	}
	switch {
	case j.State == types.JobCancelled:
		v.State, v.Err = TaskStopped, api.ErrConflict
	case j.State == types.JobFailed && notPlaced(j.Reason):
		v.Err = api.ErrUnavailable
	case j.State == types.JobFailed && strings.Contains(j.Reason, jobs.ErrTimeout.Error()):
		v.Err = api.ErrGatewayTimeout
	case j.State == types.JobFailed:
	case j.Result == nil:
		v.Reason = "the job completed without a result"
	case j.Result.ExitCode != 0:
		v.Reason = fmt.Sprintf("the function exited with code %d%s", j.Result.ExitCode, stderrHead(e.Stderr))
	case j.Result.StdoutTruncated:
		v.Reason = "the function's output is over the node's output limit"
	case e.ReadErr != nil:
		v.Reason = "reading the function's output: " + e.ReadErr.Error()
	default:
		return answered(v, e.Stdout, j.Result.Stdout)
	}
	return v
}

// answered is the verdict on the stdout of a function that exited 0.
func answered(v verdict, stdout []byte, output string) verdict {
	res, err := cgi.ParseOutput(stdout)
	if err != nil {
		v.Reason = err.Error()
		return v
	}
	v.State, v.Err, v.Reason, v.Response, v.Output = TaskCompleted, nil, "", res, output
	return v
}

// placementFailures begin the reasons of a job the auction could not
// place (orchestrator/reasons.go), after the prefixes of placementWraps.
var (
	placementFailures = []string{"no node bid", "no acceptable bid", "none of "}
	placementWraps    = []string{"gave up after ", "no capacity freed up within "}
)

// notPlaced reports whether a failed job's reason says no node took it.
func notPlaced(reason string) bool {
	for _, w := range placementWraps {
		if strings.HasPrefix(reason, w) {
			_, reason, _ = strings.Cut(reason, ": ")
		}
	}
	for _, f := range placementFailures {
		if strings.HasPrefix(reason, f) {
			return true
		}
	}
	return false
}

// addrPattern matches what would tell a caller where a provider is: a
// multiaddr, an IPv4 address (and port), a bracketed IPv6 address.
var addrPattern = regexp.MustCompile(`/(?:ip4|ip6|dns|dns4|dns6|dnsaddr)/[^\s,;)\]"']+|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\[[0-9A-Fa-f:.]+\](?::\d+)?`)

// redact takes network addresses out of a job's reason before a caller
// reads it: a reason can quote a dial error, and callers never learn
// where a provider is (peer IDs, which are not addresses, stay).
func redact(reason string) string {
	return addrPattern.ReplaceAllStringFunc(reason, func(a string) string {
		if strings.HasSuffix(a, ":") { // the sentence's colon, not the address's
			return "<address>:"
		}
		return "<address>"
	})
}

// stderrHead is the first lines of stderr, bounded, for a reason.
func stderrHead(stderr []byte) string {
	lines := bytes.SplitN(bytes.TrimSpace(stderr), []byte("\n"), stderrLines+1)
	head := string(bytes.Join(lines[:min(len(lines), stderrLines)], []byte(" | ")))
	if len(head) > stderrBytes {
		head = head[:stderrBytes] + "..."
	}
	if head = strings.ToValidUTF8(head, "?"); head == "" {
		return ""
	}
	return ": " + head
}

// apply ends t as v says, at now; a task still scheduled passes through
// running on its way to completed. It fails, leaving t as it was, when t
// ended already (stopped while its job ran).
func (v verdict) apply(t *Task, now time.Time) error {
	if t.State == TaskScheduled && v.State == TaskCompleted {
		if err := t.move(TaskRunning, now); err != nil {
			return err
		}
	}
	if err := t.move(v.State, now); err != nil {
		return err
	}
	t.Reason, t.ExitCode, t.Response = v.Reason, v.ExitCode, v.Output
	if v.Node != "" {
		t.Node = v.Node
	}
	switch {
	case v.State == TaskCompleted:
		t.Status = v.Response.Status
	case v.Err != nil:
		t.Status = api.StatusOf(v.Err)
	}
	return nil
}

// failure is the error a task that ended without an answer stands for,
// the same whether its call waited or reads it with TaskResult: its
// status's sentinel and its reason.
func failure(t Task) error {
	if t.State == TaskStopped {
		return fmt.Errorf("%w: task %s was stopped: %s", api.ErrConflict, t.ID, t.Reason)
	}
	for _, e := range []error{api.ErrUnavailable, api.ErrGatewayTimeout} {
		if api.StatusOf(e) == t.Status {
			return fmt.Errorf("%w: %s", e, t.Reason)
		}
	}
	return fmt.Errorf("%w: %s", api.ErrBadGateway, t.Reason)
}
