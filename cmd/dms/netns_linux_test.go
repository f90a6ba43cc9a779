package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// dialIn returns a dialer that connects to addr from inside host i's
// network namespace, whatever address it is asked for: the test reaches a
// daemon that listens on the host's own loopback, also while the host is
// cut off from the lab.
func (l *netlab) dialIn(i int, addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	path := filepath.Join("/run/netns", l.ns(i)) // where `ip netns add` mounts it
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		type dialed struct {
			conn net.Conn
			err  error
		}
		out := make(chan dialed, 1)
		go func() {
			// The socket belongs to the namespace of the thread that makes
			// it. The thread stays locked: when this goroutine ends in
			// another namespace, the runtime ends the thread instead of
			// reusing it.
			runtime.LockOSThread()
			conn, err := dialFromNS(ctx, path, network, addr)
			out <- dialed{conn, err}
		}()
		d := <-out
		return d.conn, d.err
	}
}

// dialFromNS moves the calling (locked) thread into the namespace at path
// and dials from there.
func dialFromNS(ctx context.Context, path, network, addr string) (net.Conn, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("setns %s: %w", path, err)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
