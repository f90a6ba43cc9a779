package dms

import (
	"maps"
	"testing"
)

// The config file keeps an offer's labels, whatever characters they hold
// (the template wrote "labels: {}" whatever they were).
func TestConfigKeepsLabels(t *testing.T) {
	home, _ := newHome(t)
	labels := map[string]string{"gpu": "yes", "a:b": `say "hi"`, "region": "eu-west-1", "x#y": "{}"}
	rewriteConfig(t, home, func(c *Config) { c.Offer.Labels = labels })
	cfg, err := LoadConfig(home)
	if err != nil || !maps.Equal(cfg.Offer.Labels, labels) {
		t.Fatalf("labels %v, %v; want %v", cfg.Offer.Labels, err, labels)
	}
}
