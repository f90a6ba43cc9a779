package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

func TestEnergyStatic(t *testing.T) {
	got, err := ReadEnergy(t.Context(), EnergyConfig{Renewable: true, CarbonIntensity: 12})
	if err != nil || got != (types.Energy{Renewable: true, CarbonIntensity: 12}) {
		t.Fatalf("ReadEnergy = %+v, %v", got, err)
	}
}

func TestEnergyFile(t *testing.T) {
	tests := []struct {
		name, content string
		want          types.Energy
		wantErr       string
	}{
		{"yaml", "renewable: true\ncarbon_intensity: 25\n", types.Energy{Renewable: true, CarbonIntensity: 25}, ""},
		{"json", `{"renewable": false, "carbon_intensity": 400.5}`, types.Energy{CarbonIntensity: 400.5}, ""},
		{"renewable only", "renewable: true", types.Energy{Renewable: true}, ""},
		{"empty", "", types.Energy{}, "empty"},
		{"no renewable", "carbon_intensity: 3", types.Energy{}, "renewable is missing"},
		{"unknown field", "renewable: true\nsolar: yes\n", types.Energy{}, "field solar not found"},
		{"negative intensity", "renewable: true\ncarbon_intensity: -4\n", types.Energy{}, "carbon_intensity -4"},
		{"too large", "renewable: true\n#" + strings.Repeat("x", energyOutputLimit), types.Energy{}, "more than 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "energy.yaml")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadEnergy(t.Context(), EnergyConfig{Renewable: true, CarbonIntensity: 1, File: path})
			checkEnergyResult(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestEnergyMissingFile(t *testing.T) {
	_, err := ReadEnergy(t.Context(), EnergyConfig{File: filepath.Join(t.TempDir(), "nope")})
	checkEnergyResult(t, types.Energy{}, err, types.Energy{}, "no such file")
}

func TestEnergyCommand(t *testing.T) {
	tests := []struct {
		name, command string
		want          types.Energy
		wantErr       string
	}{
		{"yaml", "echo 'renewable: true'; echo 'carbon_intensity: 30'", types.Energy{Renewable: true, CarbonIntensity: 30}, ""},
		{"json", `echo '{"renewable": true}'`, types.Energy{Renewable: true}, ""},
		{"fails", "echo broken meter >&2; exit 3", types.Energy{}, "exit status 3: broken meter"},
		{"garbage", "echo not yaml: [", types.Energy{}, "yaml"},
		{"floods", "yes", types.Energy{}, "more than 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadEnergy(t.Context(), EnergyConfig{Command: tt.command})
			checkEnergyResult(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestEnergyCommandTimeout(t *testing.T) {
	_, err := runEnergyCommand(t.Context(), "exec sleep 10", 50*time.Millisecond)
	if !errors.Is(err, errCommandTimeout) || !strings.Contains(err.Error(), "after 50ms") {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

func TestEnergyCommandCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := ReadEnergy(ctx, EnergyConfig{Command: "echo renewable: true"})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrEnergy) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func checkEnergyResult(t *testing.T, got types.Energy, err error, want types.Energy, wantErr string) {
	t.Helper()
	if wantErr == "" {
		if err != nil || got != want {
			t.Fatalf("ReadEnergy = %+v, %v; want %+v", got, err, want)
		}
		return
	}
	if !errors.Is(err, ErrEnergy) || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("err = %v, want ErrEnergy mentioning %q", err, wantErr)
	}
}
