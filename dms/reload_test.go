package dms

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

func TestReloadAndEnergyFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	home := filepath.Join(t.TempDir(), "home")
	if _, err := Init(ctx, home, InitOptions{BenchDuration: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	energy := filepath.Join(t.TempDir(), "energy.json")
	if err := os.WriteFile(energy, []byte(`{"renewable": false}`), 0o644); err != nil {
		t.Fatal(err)
	}
	setConfig := func(old, new string) {
		t.Helper()
		path := filepath.Join(home, configFile)
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), old) {
			t.Fatalf("config lacks %q: %v", old, err)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setConfig(`file: ""`, "file: "+energy)
	setConfig("refresh: 1m", "refresh: 20ms")

	d, err := New(WithHome(home), WithAPI(""))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	before, _ := d.Node(ctx)
	setConfig("price: 1", "price: 5")
	setConfig("labels: {}", "labels: {region: eu}")
	if err := d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := d.Node(ctx)
	if after.Capability.Price != 5*types.Credit || after.Capability.Labels["region"] != "eu" {
		t.Fatalf("after reload: price %v, labels %v", after.Capability.Price, after.Capability.Labels)
	}
	if after.ID.CapabilityCID == before.ID.CapabilityCID {
		t.Fatal("a new offer kept the old capability CID")
	}

	if err := os.WriteFile(energy, []byte(`{"renewable": true, "carbon_intensity": 20}`), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the energy file to be re-read", func() bool {
		info, _ := d.Node(ctx)
		return info.Capability.Energy.Renewable && info.Capability.Energy.CarbonIntensity == 20
	})

	setConfig("price: 5", "price: -1")
	if err := d.Reload(ctx); err == nil || !strings.Contains(err.Error(), "price") {
		t.Fatalf("reload of a bad offer: %v", err)
	}
	if info, _ := d.Node(ctx); info.Capability.Price != 5*types.Credit {
		t.Fatalf("a rejected reload changed the price to %v", info.Capability.Price)
	}
}
