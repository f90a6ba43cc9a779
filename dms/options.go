package dms

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Option configures a DMS. Options validate their arguments and New returns
// the first error.
type Option func(*config) error

type config struct {
	home      string
	listen    []string
	bootstrap []string
	compute   *bool // nil: as the config file says
	apiAddr   *string
	logger    *slog.Logger
	clock     func() time.Time
	benchmark bool // run a fresh benchmark at start even if one is stored
}

// WithHome sets the node's home directory (created by Init). Required.
func WithHome(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("dms: WithHome: empty directory")
		}
		c.home = dir
		return nil
	}
}

// WithListen sets the multiaddrs to listen on, replacing the config file's.
func WithListen(addrs ...string) Option {
	return func(c *config) error {
		if len(addrs) == 0 {
			return errors.New("dms: WithListen: no address")
		}
		c.listen = append([]string(nil), addrs...)
		return nil
	}
}

// WithBootstrap adds bootstrap peers (full multiaddrs with /p2p/ID) to the
// config file's list.
func WithBootstrap(addrs ...string) Option {
	return func(c *config) error {
		c.bootstrap = append(c.bootstrap, addrs...)
		return nil
	}
}

// WithCompute sets whether this node offers compute. A node with compute off
// submits jobs and serves results but never bids.
func WithCompute(on bool) Option {
	return func(c *config) error {
		c.compute = &on
		return nil
	}
}

// WithAPI sets the local API's listen address (host:port on loopback); ""
// disables the API.
func WithAPI(addr string) Option {
	return func(c *config) error {
		c.apiAddr = &addr
		return nil
	}
}

// WithLogger sets the structured logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("dms: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithClock injects the clock (default time.Now), for tests and simulations.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("dms: WithClock: nil clock")
		}
		c.clock = now
		return nil
	}
}

func newConfig(opts []Option) (*config, error) {
	c := &config{logger: slog.New(slog.DiscardHandler), clock: time.Now}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.home == "" {
		return nil, fmt.Errorf("dms: no home directory: use WithHome")
	}
	return c, nil
}
