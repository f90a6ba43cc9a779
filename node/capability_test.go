package node

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/opendms/dms/types"
)

func TestDetectHardware(t *testing.T) {
	// A home that does not exist yet is measured on its nearest existing parent.
	hw, err := DetectHardware(t.Context(), filepath.Join(t.TempDir(), "not", "yet"))
	if err != nil {
		t.Fatal(err)
	}
	if hw.Cores < 1 || hw.Memory <= 0 || hw.Disk <= 0 || hw.Arch != runtime.GOARCH || hw.OS != runtime.GOOS {
		t.Fatalf("hardware = %+v", hw)
	}
	t.Logf("detected %+v", hw)
}

func TestDetectHardwareCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := DetectHardware(ctx, t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestDetectParseNvidiaSMI(t *testing.T) {
	out := []byte("NVIDIA A100-SXM4-40GB, 40960\nNVIDIA GeForce RTX 4090, 24564\n[N/A], [N/A]\n")
	want := []types.GPU{
		{Vendor: "nvidia", Model: "NVIDIA A100-SXM4-40GB", Memory: 40 * gib},
		{Vendor: "nvidia", Model: "NVIDIA GeForce RTX 4090", Memory: 24564 << 20},
	}
	if got := parseNvidiaSMI(out); !slices.Equal(got, want) {
		t.Fatalf("parseNvidiaSMI = %+v", got)
	}
}

func TestDetectParseROCmSMI(t *testing.T) {
	out := []byte(`{
		"card10": {"Card series": "Instinct MI210", "VRAM Total Memory (B)": "68702699520"},
		"card2": {"Card Series": "Radeon RX 7900 XTX", "VRAM Total Memory (B)": "25753026560"},
		"system": {"Driver version": "6.7.0"}
	}`)
	want := []types.GPU{
		{Vendor: "amd", Model: "Radeon RX 7900 XTX", Memory: 25753026560},
		{Vendor: "amd", Model: "Instinct MI210", Memory: 68702699520},
	}
	if got := parseROCmSMI(out); !slices.Equal(got, want) {
		t.Fatalf("parseROCmSMI = %+v", got)
	}
	if got := parseROCmSMI([]byte("WARNING: no AMD GPU")); got != nil {
		t.Fatalf("garbage gave %+v", got)
	}
}
