package wasm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
)

// TestWarmCalls: concurrent calls of one warm instance each see their own
// stdin and environment over the instance's, and not another call's.
func TestWarmCalls(t *testing.T) {
	bin, e := setup(t)
	in := guestInput(bin, "echo")
	in.Env = map[string]string{"BASE": "b", "OVER": "instance"}
	inst, err := e.Warm(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			out, err := inst.Call(context.Background(), jobs.CallInput{
				Env: map[string]string{"OVER": fmt.Sprint("call", i)}, Stdin: fmt.Appendf(nil, "body %d", i),
			})
			if err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			got := string(out.Stdout)
			for _, want := range []string{fmt.Sprintf(`stdin="body %d"`, i), `"BASE=b"`, fmt.Sprintf(`"OVER=call%d"`, i)} {
				if !strings.Contains(got, want) {
					t.Errorf("call %d: %q lacks %s", i, got, want)
				}
			}
		})
	}
	wg.Wait()
}

// TestWarmCallLimits: a call's timeout, shorter than the instance's,
// stops it; the instance serves the next call; Close stops a call in
// flight, and later calls fail.
func TestWarmCallLimits(t *testing.T) {
	bin, e := setup(t)
	inst, err := e.Warm(context.Background(), guestInput(bin, "sleep", "1h"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = inst.Call(context.Background(), jobs.CallInput{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, jobs.ErrTimeout) {
		t.Fatalf("a call past its timeout: %v, want ErrTimeout", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := inst.Call(context.Background(), jobs.CallInput{})
		done <- err
	}()
	// Close waits for the call it stops: it returns only once the call did.
	time.AfterFunc(20*time.Millisecond, func() { inst.Close() })
	if err := <-done; err == nil {
		t.Fatal("a call in flight at Close succeeded")
	}
	if _, err := inst.Call(context.Background(), jobs.CallInput{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("a call after Close: %v, want ErrClosed", err)
	}
}

// TestWarmBadModule: Warm refuses what Run refuses, before any call.
func TestWarmBadModule(t *testing.T) {
	_, e := setup(t)
	_, err := e.Warm(context.Background(), jobs.Input{ModuleID: "junk", Module: []byte("not wasm")})
	if !errors.Is(err, jobs.ErrBadModule) {
		t.Fatalf("warming junk: %v, want ErrBadModule", err)
	}
	_, err = e.Warm(context.Background(), jobs.Input{ModuleID: "big", Module: command(64), Memory: 1 << 20})
	if !errors.Is(err, jobs.ErrMemoryLimit) {
		t.Fatalf("warming a module over its memory: %v, want ErrMemoryLimit", err)
	}
}

// BenchmarkWarmCall is one call of a warm instance of a hand-assembled
// module: what a warm call costs the executor.
func BenchmarkWarmCall(b *testing.B) {
	_, e := setup(b)
	inst, err := e.Warm(context.Background(), jobs.Input{ModuleID: "empty", Module: command(1)})
	if err != nil {
		b.Fatal(err)
	}
	defer inst.Close()
	c := jobs.CallInput{Env: map[string]string{"REQUEST_METHOD": "GET"}, Stdin: []byte("hello")}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := inst.Call(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
}
