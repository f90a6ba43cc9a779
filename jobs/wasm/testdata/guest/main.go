// Command guest is the test program of the wasm executor's tests, built for
// wasip1. Its first argument picks what it does.
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: guest mode [args]")
		os.Exit(64)
	}
	modes := map[string]func([]string){
		"echo": echo, "exit": exit, "loop": loop, "sleep": sleep,
		"membomb": membomb, "flood": flood, "files": files,
		"burn": burn, "alloc": alloc,
	}
	run, ok := modes[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(64)
	}
	run(os.Args[2:])
}

// echo prints argv, the environment and stdin.
func echo([]string) {
	in, _ := io.ReadAll(os.Stdin)
	env := os.Environ()
	slices.Sort(env)
	fmt.Printf("args=%q\nenv=%q\nstdin=%q\n", os.Args, env, in)
	fmt.Fprintln(os.Stderr, "to stderr")
}

func exit(args []string) {
	code, _ := strconv.Atoi(args[0])
	fmt.Println("exiting with", code)
	os.Exit(code)
}

var sink int

// loop spins forever without calling the host.
func loop([]string) {
	fmt.Println("looping")
	for i := 0; ; i++ {
		sink += i
	}
}

func sleep(args []string) {
	d, _ := time.ParseDuration(args[0])
	fmt.Println("sleeping", d)
	time.Sleep(d)
	fmt.Println("woke")
}

// burn spins for a duration of wall time, calling the host (for the
// clock) only every so often.
func burn(args []string) {
	d, _ := time.ParseDuration(args[0])
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range 1 << 16 {
			sink += i
		}
	}
	fmt.Println("burnt", d)
}

var hoard [][]byte

// alloc allocates and touches MiB, then holds them for a duration, if given.
func alloc(args []string) {
	n, _ := strconv.Atoi(args[0])
	for range n {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		hoard = append(hoard, b)
	}
	if len(args) > 1 {
		d, _ := time.ParseDuration(args[1])
		time.Sleep(d)
	}
	fmt.Println("allocated", len(hoard), "MiB")
}

// membomb allocates until the runtime dies.
func membomb([]string) {
	fmt.Println("growing")
	for {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		hoard = append(hoard, b)
	}
}

// flood writes n bytes to stdout and to stderr, in small writes.
func flood(args []string) {
	n, _ := strconv.Atoi(args[0])
	line := []byte(strings.Repeat("x", 99) + "\n")
	for written := 0; written < n; written += len(line) {
		os.Stdout.Write(line[:min(len(line), n-written)])
		os.Stderr.Write(line[:min(len(line), n-written)])
	}
}

// files reports, one line each, what the guest can do with the filesystem.
func files([]string) {
	report("read /inputs/in.txt", func() error {
		b, err := os.ReadFile("/inputs/in.txt")
		fmt.Printf("content %q\n", b)
		return err
	})
	report("write /inputs/new.txt", func() error { return os.WriteFile("/inputs/new.txt", []byte("x"), 0o644) })
	report("write /outputs/out.txt", func() error { return os.WriteFile("/outputs/out.txt", []byte("result"), 0o644) })
	report("read /etc/passwd", func() error { _, err := os.ReadFile("/etc/passwd"); return err })
	report("symlink escape", func() error {
		if err := os.Symlink("../../../../../../../../etc/passwd", "/outputs/link"); err != nil {
			return err
		}
		_, err := os.ReadFile("/outputs/link")
		return err
	})
	report("raw open /inputs/in.txt", func() error { return rawOpen("/inputs", "in.txt") })
	report("dotdot escape", func() error { return rawOpen("/outputs", "../../../../../../../../etc/passwd") })
	report("inputs dotdot escape", func() error { return rawOpen("/inputs", "../../../../../../../../etc/passwd") })
}

func report(what string, f func() error) {
	if err := f(); err != nil {
		fmt.Printf("%s: denied\n", what)
		return
	}
	fmt.Printf("%s: allowed\n", what)
}

//go:wasmimport wasi_snapshot_preview1 path_open
func pathOpen(fd int32, dirflags uint32, path unsafe.Pointer, pathLen uint32, oflags uint32, rightsBase, rightsInheriting uint64, fdflags uint32, result unsafe.Pointer) uint32

// rawOpen opens name relative to dir with path_open itself, bypassing the
// path cleaning Go's syscall package does.
func rawOpen(dir, name string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	p := []byte(name)
	var fd int32
	if errno := pathOpen(int32(d.Fd()), 0, unsafe.Pointer(&p[0]), uint32(len(p)), 0, 1<<1, 0, 0, unsafe.Pointer(&fd)); errno != 0 {
		return fmt.Errorf("errno %d", errno)
	}
	return nil
}
