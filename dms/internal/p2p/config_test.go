package p2p

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"no key":            func(c *Config) { c.Key = nil },
		"negative timeout":  func(c *Config) { c.IOTimeout = -time.Second },
		"negative streams":  func(c *Config) { c.MaxInboundStreams = -1 },
		"low above high":    func(c *Config) { c.ConnsLow, c.ConnsHigh = 600, 500 },
		"high above max":    func(c *Config) { c.ConnsHigh, c.MaxConns = 900, 800 },
		"ttl above max ttl": func(c *Config) { c.MessageTTL, c.MaxTTL = time.Hour, time.Minute },
		"backoff inverted":  func(c *Config) { c.DiscoveryMin, c.DiscoveryMax = time.Minute, time.Second },
		"negative rate":     func(c *Config) { c.BidRequestRate = -1 },
		"negative burst":    func(c *Config) { c.BidRequestBurst = -1 },
		"negative repair":   func(c *Config) { c.GossipRepair = -time.Second },
	} {
		cfg := Config{Key: newKey(t)}
		mutate(&cfg)
		if _, err := cfg.withDefaults(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: got %v, want ErrBadConfig", name, err)
		}
	}
	cfg, err := Config{Key: newKey(t)}.withDefaults()
	if err != nil || cfg.MaxConns != 1024 || cfg.MessageTTL != 30*time.Second || len(cfg.Listen) != 2 ||
		cfg.BidRequestRate != 50 || cfg.BidRequestBurst != 100 || cfg.GossipRepair != 2*time.Second {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	for name, cfg := range map[string]Config{
		"bad bootstrap": {Key: newKey(t), Bootstrap: []string{"/ip4/127.0.0.1/tcp/1"}}, // no /p2p
		"bad listen":    {Key: newKey(t), Listen: []string{"not a multiaddr"}},
	} {
		if h, err := New(context.Background(), cfg); err == nil {
			_ = h.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}
