//go:build !linux

package main

import (
	"context"
	"errors"
	"net"
)

// dialIn needs Linux's network namespaces; newNetlab skips elsewhere
// before anything dials.
func (l *netlab) dialIn(int, string) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, errors.ErrUnsupported }
}
