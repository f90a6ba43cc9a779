package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"

	"github.com/opendms/dms/jobs"
)

// argv0 is the program name every guest sees.
const argv0 = "job"

// moduleConfig sets up what the guest sees: argv, env, stdio, clocks,
// randomness and mounts. The caller must call cleanup after the run.
func moduleConfig(ctx context.Context, in jobs.Input, stdout, stderr *jobs.LimitedBuffer) (cfg wazero.ModuleConfig, cleanup func(), err error) {
	if err := checkStrings(in); err != nil {
		return nil, nil, err
	}
	fsc, cleanup, err := mounts(in)
	if err != nil {
		return nil, nil, err
	}
	cfg = wazero.NewModuleConfig().
		WithName("").         // anonymous, so runs of one module may overlap
		WithStartFunctions(). // run calls _start itself
		WithArgs(append([]string{argv0}, in.Args...)...).
		WithStdin(bytes.NewReader(in.Stdin)).WithStdout(stdout).WithStderr(stderr).
		WithSysWalltime().WithSysNanotime().WithNanosleep(sleeper(ctx)).
		WithRandSource(rand.Reader).
		WithFSConfig(fsc)
	for _, k := range slices.Sorted(maps.Keys(in.Env)) {
		cfg = cfg.WithEnv(k, in.Env[k])
	}
	return cfg, cleanup, nil
}

// checkStrings rejects args and env WASI cannot carry (C strings, NAME=value).
func checkStrings(in jobs.Input) error {
	for _, a := range in.Args {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("%w: an argument contains a NUL byte", ErrBadInput)
		}
	}
	for k, v := range in.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return fmt.Errorf("%w: environment variable %q: bad name or NUL byte", ErrBadInput, k)
		}
	}
	return nil
}

// sleeper is the guest's sleep: real, but cut short when ctx ends, so a
// sleeping guest stops at its timeout too.
func sleeper(ctx context.Context) sys.Nanosleep {
	return func(ns int64) {
		t := time.NewTimer(time.Duration(ns))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// mounts gives the guest InputDir read-only at /inputs and OutputDir at
// /outputs, and nothing else. /inputs goes through an os.Root, so even a
// symbolic link in the directory cannot lead out of it; /outputs refuses to
// create symbolic links, the one way out of a read-write mount.
func mounts(in jobs.Input) (fsc wazero.FSConfig, cleanup func(), err error) {
	fsc, cleanup = wazero.NewFSConfig(), func() {}
	if in.InputDir != "" {
		root, err := os.OpenRoot(in.InputDir)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: input directory: %w", ErrBadInput, err)
		}
		fsc, cleanup = fsc.WithFSMount(root.FS(), "/inputs"), func() { root.Close() }
	}
	if in.OutputDir != "" {
		if err := isDir(in.OutputDir); err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("%w: output directory: %w", ErrBadInput, err)
		}
		fsc = fsc.(sysfs.FSConfig).WithSysFSMount(noSymlinks{sysfs.DirFS(in.OutputDir)}, "/outputs")
	}
	return fsc, cleanup, nil
}

func isDir(path string) error {
	fi, err := os.Stat(path)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a directory", path)
	}
	return err
}

// noSymlinks is a file system on which the guest cannot create symbolic
// links: one pointing out of the directory would be followed by the host.
type noSymlinks struct{ experimentalsys.FS }

// Symlink implements experimentalsys.FS by refusing.
func (noSymlinks) Symlink(_, _ string) experimentalsys.Errno { return experimentalsys.EPERM }
