package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server serves a Handler, on a loopback address unless ServeRemote
// started it. Close stops it.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when the serving goroutine returns
	err  error         // what Serve returned, read after done
}

// Serve listens on addr (host:port; the host must be a loopback IP or
// "localhost", the port may be 0) and serves h in a goroutine. It refuses any
// other address with ErrNotLoopback: the API is for this machine only.
func Serve(addr string, h http.Handler) (*Server, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	return ServeRemote(addr, h)
}

// ServeRemote is Serve on any address, for a node whose users are on other
// machines: in a container, say, where the host reaches it through a
// published port. The token travels in clear HTTP: keep such an address on
// a private network.
func ServeRemote(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen: %w", err)
	}
	stop := make(chan struct{})
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return withStop(context.Background(), stop) },
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	s.srv.RegisterOnShutdown(func() { close(stop) }) // ends event streams so Shutdown need not wait for them
	go s.serve()
	return s, nil
}

func (s *Server) serve() {
	defer close(s.done)
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		s.err = err
	}
}

// Addr returns the address the server listens on, with the real port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting requests, ends event streams, waits for requests in
// flight until ctx is done (then drops them), and waits for the server's
// goroutine. It returns the serving error, if any.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	return errors.Join(err, s.err)
}

// checkLoopback accepts host:port where host is a loopback IP or localhost.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("api: address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q (use 127.0.0.1:PORT, [::1]:PORT or localhost:PORT)", ErrNotLoopback, addr)
}

type stopKey struct{}

// withStop records in ctx the channel closed when the server shuts down.
func withStop(ctx context.Context, stop <-chan struct{}) context.Context {
	return context.WithValue(ctx, stopKey{}, stop)
}

// stopping returns the shutdown channel of the server serving ctx's request;
// nil (never ready) when the handler runs outside Serve.
func stopping(ctx context.Context) <-chan struct{} {
	stop, _ := ctx.Value(stopKey{}).(<-chan struct{})
	return stop
}

// Stopping returns a channel closed when the server serving ctx's request
// shuts down (nil, never closed, outside Serve): a handler that streams,
// such as the dashboard's events, ends when it closes.
func Stopping(ctx context.Context) <-chan struct{} { return stopping(ctx) }
