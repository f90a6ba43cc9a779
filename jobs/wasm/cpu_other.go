//go:build !linux

package wasm

import "time"

// threadCPU cannot read a thread's CPU time here: runs report none.
func threadCPU() (time.Duration, bool) { return 0, false }
