package dms

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
)

// FuzzLoadConfig loads arbitrary bytes as a home's config.yaml. Whatever
// they are, LoadConfig does not panic and a refusal names the file. A config
// it accepts has a valid offer that resolves against a machine without
// panicking (to resources within the machine, or to an *node.OfferError),
// and it survives being written out and loaded again. Seeds are in
// testdata/fuzz/FuzzLoadConfig.
func FuzzLoadConfig(f *testing.F) {
	hw := types.Hardware{Cores: 8, Memory: 16 << 30, Disk: 100 << 30}
	machine := types.Resources{CPU: 8000, Memory: hw.Memory, Disk: hw.Disk}
	f.Fuzz(func(t *testing.T, data []byte) {
		home := t.TempDir()
		path := filepath.Join(home, configFile)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(home)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dms: "+path+": ") {
				t.Fatalf("error %q does not name %s", err, path)
			}
			return
		}
		if err := cfg.Offer.Validate(); err != nil {
			t.Fatalf("accepted an invalid offer: %v", err)
		}
		res, err := cfg.Offer.Resolve(hw)
		if _, ok := errors.AsType[*node.OfferError](err); err != nil && !ok {
			t.Fatalf("Resolve error %v is not an *OfferError", err)
		}
		if err == nil && (res.Negative() || !res.Fits(machine)) {
			t.Fatalf("offer %+v resolved to %s on a machine of %s", cfg.Offer, res, machine)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("accepted config does not encode: %v", err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := LoadConfig(home)
		if err != nil {
			t.Fatalf("written back, the config does not load: %v\n%s", err, out)
		}
		if out2, _ := yaml.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the config:\nbefore %s\nafter  %s", out, out2)
		}
	})
}
