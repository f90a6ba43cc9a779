package p2p

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// manyFiles returns n input files as a workflow's fan-in names them: a
// path under a directory per instance, the CID, the size and the peer
// that produced each.
func manyFiles(n int, from string) []types.InputFile {
	files := make([]types.InputFile, n)
	for i := range files {
		c := types.CIDOf(fmt.Appendf(nil, "part %d", i)).String()
		files[i] = types.InputFile{Path: fmt.Sprintf("counts/part-%05d.txt/stdout", i), CID: c, Size: int64(1000 + i), From: []string{from}}
	}
	return files
}

// TestTaskFramesCarryTenThousandFiles sends an invocation naming
// types.MaxInputFiles input files (about 1.9 MiB, over the 256 KiB of other
// envelopes) and gets back a status whose result names 1,000 output files
// and their sizes.
func TestTaskFramesCarryTenThousandFiles(t *testing.T) {
	node := newTestHost(t, testConfig(t))
	requester := newTestHost(t, testConfig(t, node.Addrs()...))
	files := manyFiles(types.MaxInputFiles, node.ID())
	if err := types.CheckInputFiles(files); err != nil {
		t.Fatal(err)
	}
	res := &types.Result{Files: map[string]string{}, Sizes: map[string]int64{}}
	for i, f := range files[:1000] {
		res.Files[fmt.Sprintf("out/%04d.txt", i)] = f.CID
		res.Sizes[f.CID] = f.Size
	}
	var got atomic.Int32
	node.HandleStream(InvokeProtocol, func(_ context.Context, _ string, _ *types.Envelope, msg types.Message, send func(types.Message) error) error {
		inv := msg.(*types.Invocation)
		got.Store(int32(len(inv.Task.Files)))
		return send(&types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: types.AllocCompleted, Result: res})
	})
	inv := &types.Invocation{JobID: "j", AllocationID: "a", Task: types.Task{Executor: "wasm", Files: files}}
	ctx := testCtx(t, 20*time.Second)
	st, err := requester.OpenStream(ctx, node.ID(), node.Addrs(), InvokeProtocol, inv)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	msg, err := st.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := msg.(*types.Status); len(s.Result.Files) != 1000 || len(s.Result.Sizes) != 1000 || got.Load() != types.MaxInputFiles {
		t.Fatalf("the node read %d files; the status names %d files, %d sizes", got.Load(), len(s.Result.Files), len(s.Result.Sizes))
	}
}

// TestOnlyTaskFramesAreLarge: an Accept over types.MaxEnvelopeSize is
// refused as oversized, before it is parsed, though an invocation of its
// size would pass; an invocation over types.MaxTaskEnvelopeSize is
// refused too.
func TestOnlyTaskFramesAreLarge(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	var calls atomic.Int32
	handler := func(context.Context, string, *types.Envelope, types.Message) (types.Message, error) {
		calls.Add(1)
		return nil, nil
	}
	h.Handle(AcceptProtocol, handler)
	h.HandleStream(InvokeProtocol, func(context.Context, string, *types.Envelope, types.Message, func(types.Message) error) error {
		calls.Add(1)
		return nil
	})
	key := newKey(t)
	raw := newRawHost(t, key, false)
	if err := raw.Connect(testCtx(t, 10*time.Second), addrInfo(h)); err != nil {
		t.Fatal(err)
	}
	big := types.JobID(bytes.Repeat([]byte("x"), types.MaxEnvelopeSize))
	if _, err := rawExchange(t, raw, h, AcceptProtocol, sealedFrame(t, key, &types.Accept{JobID: big})); err == nil {
		t.Fatal("an Accept over MaxEnvelopeSize got a reply")
	}
	waitFor(t, 5*time.Second, "the accept counted as oversized", func() bool { return h.Stats().Streams[ReasonOversized] == 1 })
	huge := types.JobID(bytes.Repeat([]byte("x"), types.MaxTaskEnvelopeSize))
	if _, err := rawExchange(t, raw, h, InvokeProtocol, sealedFrame(t, key, &types.Invocation{JobID: huge})); err == nil {
		t.Fatal("an Invocation over MaxTaskEnvelopeSize got a reply")
	}
	waitFor(t, 5*time.Second, "the invocation counted as oversized", func() bool { return h.Stats().Streams[ReasonOversized] == 2 })
	if n := calls.Load(); n != 0 {
		t.Fatalf("handlers ran %d times", n)
	}
}
