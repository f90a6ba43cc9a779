package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// The flow scenario's measure of data locality: a flow of independent
// chains, in which step make writes a large stdout per item
// (tinywasm.Filler: bytes derived from the item, so no two chains share
// one) and step use, a fan-out over make's stdouts, reads its one file
// and prints it back (tinywasm.Cat). Each use instance needs one input,
// held by the node that ran its make instance: where the auction places
// it decides whether the input moves. The flow runs twice, over other
// items each time: submitted by node 0, which ranks by locality (and
// waits the holders' grace), then by node 1, which does not. For each:
//
//   - bytes moved: the sizes of the inputs whose use instance ran on
//     another node than the make instance that wrote them;
//   - on the holder: the share of use instances that ran on that node;
//   - the makespan, and of it the use step's time (from the end of the
//     last make instance), and the instances of each step per node.
//
// Every use instance must print its input back: its stdout has the same
// CID as the make instance's.
//
// A make instance asks for two fifths of the smallest node's CPU, so that
// a node runs two at once and the chains spread over the computing
// nodes, as a heavy step's instances do over a network (else the ranking
// would send them all to the node it favours); a use instance asks for so
// little that a node can hold a bid for every one at once, so that
// capacity never decides where they go: the ranking does. Without
// locality it favours capability score and load, whatever a node holds.

// chainsSetup is what the chains' flow runs: its two modules, held by the
// requesters, and what each instance asks for.
type chainsSetup struct {
	makeCID, useCID string
	makeCPU, useCPU types.MilliCPU
}

// chainsRun is one run of the chains' flow, summed up.
type chainsRun struct {
	took     time.Duration
	useTook  time.Duration // from the end of the last make instance to the flow's
	moved    int64         // input bytes the use instances fetched from another node
	onHolder int           // use instances that ran where their input was
	perNode  map[string][]int
}

// prepareChains stores the chains' modules on every requester and sizes
// their instances.
func (b *flowBench) prepareChains(ctx context.Context) error {
	cpu, err := b.smallestCPU(ctx)
	if err != nil {
		return err
	}
	b.chains.makeCPU, b.chains.useCPU = cpu*2/5, cpu/types.MilliCPU(2*b.size.chains)
	if b.chains.makeCID, err = b.putOnRequesters(ctx, tinywasm.Filler(b.size.chainBytes)); err != nil {
		return err
	}
	b.chains.useCID, err = b.putOnRequesters(ctx, tinywasm.Cat("in"))
	return err
}

// chainsDoc is the chains' flow over items, in YAML.
func (b *flowBench) chainsDoc(items []string) ([]byte, error) {
	list, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `name: bench-chains
parallel: %d
steps:
  make:
    for_each: %s
    module: %s
    args: ["{{item}}"]
    resources: {cpu: %dm, memory: 16MiB}
    timeout: 30s
    queue_timeout: 20s
  use:
    for_each: make.stdout
    module: %s
    inputs: {in: item}
    resources: {cpu: %dm, memory: 16MiB}
    timeout: 30s
    queue_timeout: 20s
`, b.size.parallel, list, b.chains.makeCID, b.chains.makeCPU, b.chains.useCID, b.chains.useCPU), nil
}

// runChains submits the chains' flow over items to req, follows it to
// its end, which must be a success, and sums it up.
func (b *flowBench) runChains(ctx context.Context, req *dms.DMS, items []string) (chainsRun, error) {
	doc, err := b.chainsDoc(items)
	if err != nil {
		return chainsRun{}, err
	}
	f, err := jobs.ParseFlow(doc)
	if err != nil {
		return chainsRun{}, fmt.Errorf("bench: the chains' flow: %w", err)
	}
	start := time.Now()
	fl, err := req.SubmitFlow(ctx, f)
	if err != nil {
		return chainsRun{}, fmt.Errorf("bench: submitting the chains' flow: %w", err)
	}
	r, err := followFlow(ctx, req, fl.ID, "make", len(items), start)
	if err != nil {
		return chainsRun{}, err
	}
	if r.flow.State != api.FlowCompleted {
		return chainsRun{}, fmt.Errorf("%w: flow %s %s: %s", ErrFlow, fl.ID, r.flow.State, r.flow.Reason)
	}
	run := chainsRun{took: r.took, useTook: r.took - r.fanDone, perNode: b.perNode(r.flow)}
	run.moved, run.onHolder, err = chainsMoved(r.flow, len(items))
	return run, err
}

// chainsMoved pairs each use instance with the make instance whose
// stdout it read (same key) and sums the bytes of those that ran on
// another node, counting the others. Every chain must have completed,
// its use printing its input back.
func chainsMoved(f api.Flow, n int) (moved int64, onHolder int, err error) {
	made := make(map[string]api.FlowInstance, n)
	for _, in := range step(f, "make").Instances {
		made[in.Key] = in
	}
	uses := step(f, "use").Instances
	if len(made) != n || len(uses) != n {
		return 0, 0, fmt.Errorf("%w: %d make and %d use instances, want %d each", ErrFlow, len(made), len(uses), n)
	}
	for _, use := range uses {
		m, ok := made[use.Key]
		switch {
		case !ok || m.Result == nil || use.Result == nil:
			return 0, 0, fmt.Errorf("%w: use instance %q has no result, or no make instance with a result", ErrFlow, use.Key)
		case use.Result.Stdout != m.Result.Stdout:
			return 0, 0, fmt.Errorf("%w: use instance %q printed %s, not its input %s", ErrJob, use.Key, use.Result.Stdout, m.Result.Stdout)
		case use.Node == m.Node:
			onHolder++
		default:
			moved += m.Result.Sizes[m.Result.Stdout]
		}
	}
	return moved, onHolder, nil
}

// measureChains runs the chains on node 0, with locality, then on node 1,
// without, and returns their figures.
func (b *flowBench) measureChains(ctx context.Context, o Options) (map[string]any, error) {
	on, err := b.runChains(ctx, b.c.req, items("c0", b.size.chains))
	if err != nil {
		return nil, fmt.Errorf("the chains: %w", err)
	}
	o.Log.Info("chains done", "makespan", on.took.Round(time.Millisecond), "bytes moved", on.moved, "on the holder", on.onHolder)
	off, err := b.runChains(ctx, b.c.Nodes[1], items("c1", b.size.chains))
	if err != nil {
		return nil, fmt.Errorf("the chains without locality: %w", err)
	}
	o.Log.Info("chains without locality done", "makespan", off.took.Round(time.Millisecond), "bytes moved", off.moved, "on the holder", off.onHolder)
	return b.chainsFigures(on, off), nil
}

// chainsFigures are the two runs' figures: node 0's with locality, node
// 1's without.
func (b *flowBench) chainsFigures(on, off chainsRun) map[string]any {
	share := func(r chainsRun) float64 { return round3(float64(r.onHolder) / float64(b.size.chains)) }
	return map[string]any{
		"chains": b.size.chains, "chain_input_bytes": b.size.chainBytes, "chains_input_bytes": b.size.chains * b.size.chainBytes,
		"bytes_moved": on.moved, "bytes_moved_no_locality": off.moved,
		"on_holder": share(on), "on_holder_no_locality": share(off),
		"chains_makespan_ms": ms(on.took), "chains_makespan_no_locality_ms": ms(off.took),
		"chains_use_ms": ms(on.useTook), "chains_use_no_locality_ms": ms(off.useTook),
		"chains_per_node": on.perNode, "chains_per_node_no_locality": off.perNode,
	}
}
