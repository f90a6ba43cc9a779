package dms_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/jobs"
)

// Two nodes in one process: one submits, the other computes. The job is
// auctioned over gossipsub, placed, run, and its output fetched and verified.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root, err := os.MkdirTemp("", "dms-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(root)

	start := func(name string, opts ...dms.Option) *dms.DMS {
		home := filepath.Join(root, name)
		if _, err := dms.Init(ctx, home, dms.InitOptions{BenchDuration: 10 * time.Millisecond}); err != nil {
			panic(err)
		}
		d, err := dms.New(append(opts, dms.WithHome(home), dms.WithAPI(""))...)
		if err != nil {
			panic(err)
		}
		if err := d.Start(ctx); err != nil {
			panic(err)
		}
		return d
	}
	provider := start("provider")
	defer provider.Close()
	info, err := provider.Node(ctx)
	if err != nil {
		panic(err)
	}
	requester := start("requester", dms.WithCompute(false), dms.WithBootstrap(info.Addrs...))
	defer requester.Close()

	spec, err := jobs.ParseFile("../examples/hello/job.yaml")
	if err != nil {
		panic(err)
	}
	h, err := requester.Submit(ctx, spec)
	if err != nil {
		panic(err)
	}
	job, err := h.Wait(ctx)
	if err != nil {
		panic(err)
	}
	out, err := h.Stdout(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(job.State, job.Node == info.PeerID)
	fmt.Print(string(out))
	// Output:
	// completed true
	// hello from dms: args=[a b]
}
