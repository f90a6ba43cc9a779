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

// verdict is how a call ends: its task's final state and what it
// records, and the response or the error the caller gets.
type verdict struct {
	State    TaskState
	Err      error  // the api sentinel of a failure or a stop; nil when completed, or when nobody is answered
	Reason   string // why it failed or stopped
	Response cgi.Response
	Node     string
	Job      string // the job of the instance that ran it
	ExitCode *int
	Output   string // CID of the stdout a completed task answered with, when it is kept
	// RetryAfter, with a 429 or 503, tells the caller when to try again.
	RetryAfter time.Duration
}

// Bounds of the stderr a non-zero exit quotes.
const (
	stderrLines = 3
	stderrBytes = 512
)

// classifyCall decides how a call ends from its instance's reply. It is
// the one place of the rules:
//   - failed on its timeout (jobs.ErrTimeout on the node): 504.
//   - failed otherwise (a trap, its memory limit): 502 with the reason.
//   - exited with a non-zero code: 502 with the code and the head of
//     stderr; stdout cut at the node's output limit: 502.
//   - exited 0: stdout read as CGI output; malformed output
//     (cgi.ErrBadOutput) 502, else completed with the function's own
//     status.
func classifyCall(r *types.CallReply, in *instance) verdict {
	v := verdict{State: TaskFailed, Err: api.ErrBadGateway, Node: in.peer, Job: in.job}
	if r.Status == types.CallOK {
		code := r.ExitCode
		v.ExitCode = &code
	}
	switch {
	case r.Status == types.CallFailed && strings.Contains(r.Error, jobs.ErrTimeout.Error()):
		v.Err, v.Reason = api.ErrGatewayTimeout, redact(r.Error)
	case r.Status != types.CallOK:
		v.Reason = redact(r.Error)
	case r.ExitCode != 0:
		v.Reason = fmt.Sprintf("the function exited with code %d%s", r.ExitCode, stderrHead(r.Stderr))
	case r.StdoutTruncated:
		v.Reason = "the function's output is over the node's output limit"
	default:
		return answered(v, r.Stdout)
	}
	return v
}

// answered is the verdict on the stdout of a function that exited 0.
func answered(v verdict, stdout []byte) verdict {
	res, err := cgi.ParseOutput(stdout)
	if err != nil {
		v.Reason = err.Error()
		return v
	}
	v.State, v.Err, v.Reason, v.Response = TaskCompleted, nil, "", res
	return v
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
		t.Node, t.Job = v.Node, v.Job
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
	for _, e := range []error{api.ErrUnavailable, api.ErrGatewayTimeout, api.ErrTooManyRequests} {
		if api.StatusOf(e) == t.Status {
			return fmt.Errorf("%w: %s", e, t.Reason)
		}
	}
	return fmt.Errorf("%w: %s", api.ErrBadGateway, t.Reason)
}
