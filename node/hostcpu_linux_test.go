package node

import (
	"os/exec"
	"runtime"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	total, busy, err := parseProcStat([]byte("cpu  5321 7 2528 133717 311 3 33 18 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil || total != 5321+7+2528+133717+311+3+33+18 || busy != 5321+7+2528+3+33 {
		t.Fatalf("total %d, busy %d, %v", total, busy, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3", "cpu 1 2 3 4 5 6 7 x"} {
		if _, _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseSelfStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	got, err := parseSelfStat([]byte("4242 (a) b (c) S 1 4242 4242 0 -1 4194560 900 0 0 0 170 30 0 0 20 0 12 0 1000 1 1 1\n"))
	if err != nil || got != 200 {
		t.Fatalf("utime + stime = %d, %v; want 200", got, err)
	}
	if _, err := parseSelfStat([]byte("4242 (a) S 1 2 3")); err == nil {
		t.Fatal("a short line parsed")
	}
}

// The sampler, for real: busy-loop processes the test starts are other
// processes' CPU; busy goroutines of this process are the node's own.
func TestHostCPUTellsOthersFromOwn(t *testing.T) {
	cpu, err := HostCPU()
	if err != nil {
		t.Fatal(err)
	}
	measure := func(load func()) (others float64, d CPUTimes) {
		t.Helper()
		before, err := cpu.CPUTimes()
		if err != nil {
			t.Fatal(err)
		}
		load()
		after, err := cpu.CPUTimes()
		if err != nil {
			t.Fatal(err)
		}
		d = CPUTimes{Total: after.Total - before.Total, Busy: after.Busy - before.Busy, Own: after.Own - before.Own}
		return float64(d.Busy-d.Own) / float64(d.Total), d
	}

	others, d := measure(func() { loadHost(t, 2*runtime.NumCPU(), 500*time.Millisecond) })
	t.Logf("busy-loop processes: others %.0f%% (%+v)", others*100, d)
	if others < 0.5 {
		t.Fatalf("with %d busy-loop processes on %d cores, other processes used %.0f%%", 2*runtime.NumCPU(), runtime.NumCPU(), others*100)
	}
	_, d = measure(func() { spin(runtime.NumCPU(), 300*time.Millisecond) })
	t.Logf("busy goroutines: %+v", d)
	if d.Own < 50*time.Millisecond || d.Own > d.Busy+100*time.Millisecond {
		t.Fatalf("spinning %d goroutines for 300ms: own %s of busy %s", runtime.NumCPU(), d.Own, d.Busy)
	}
}

// loadHost runs n busy-loop processes for d, and waits until they are gone.
func loadHost(t *testing.T, n int, d time.Duration) {
	t.Helper()
	var cmds []*exec.Cmd
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	time.Sleep(d)
	for _, cmd := range cmds {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// spin keeps n goroutines busy for d.
func spin(n int, d time.Duration) {
	done := make(chan struct{})
	end := time.Now().Add(d)
	for range n {
		go func() {
			for time.Now().Before(end) {
			}
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
}
