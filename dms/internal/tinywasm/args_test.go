package tinywasm

import (
	"strings"
	"testing"
)

// TestArgs: the module prints each argument on a line of its own, and
// nothing without arguments.
func TestArgs(t *testing.T) {
	module := Args()
	for _, args := range [][]string{nil, {"w17"}, {"a", "b c", ""}, {strings.Repeat("x", 60000)}} {
		got := string(run(t, module, args...))
		want := ""
		for _, a := range args {
			want += a + "\n"
		}
		if got != want {
			t.Errorf("args %.40q: printed %.40q (%d bytes), want %d bytes", args, got, len(got), len(want))
		}
	}
}
