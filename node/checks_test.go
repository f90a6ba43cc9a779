package node

import (
	"slices"
	"testing"

	"github.com/opendms/dms/types"
)

func testSnapshot() *Snapshot {
	return &Snapshot{
		Executors:  map[string]bool{"wasm": true, "process": true, "docker": false},
		Labels:     map[string]string{"region": "us", "tier": "gold"},
		Energy:     types.Energy{Renewable: false},
		Price:      2_500_000,
		Registered: types.Resources{CPU: 4000, Memory: 8 * gib, Disk: 100 * gib},
		Available:  types.Resources{CPU: 1000, Memory: 1 * gib, Disk: 100 * gib},
	}
}

func testRequest() *types.BidRequest {
	return &types.BidRequest{
		JobID:     "j",
		Executor:  "wasm",
		Resources: types.Resources{CPU: 500, Memory: 512 << 20},
	}
}

func TestChecksDecide(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*types.BidRequest, *Snapshot)
		want   []string
	}{
		{"passes", func(*types.BidRequest, *Snapshot) {}, nil},
		{"executor missing", func(r *types.BidRequest, _ *Snapshot) { r.Executor = "docker" },
			[]string{`executor: "docker" not available (have process, wasm)`}},
		{"no executors", func(r *types.BidRequest, s *Snapshot) { s.Executors = nil },
			[]string{`executor: "wasm" not available (have none)`}},
		{"network asked, none given", func(r *types.BidRequest, _ *Snapshot) { r.Network = true },
			[]string{"network: the job asks for a network; this node gives jobs none"}},
		{"network asked and given", func(r *types.BidRequest, s *Snapshot) { r.Network, s.Network = true, true }, nil},
		{"label differs", func(r *types.BidRequest, _ *Snapshot) { r.Constraints.Labels = map[string]string{"region": "eu"} },
			[]string{"labels: need region=eu, have region=us"}},
		{"labels, every mismatch", func(r *types.BidRequest, _ *Snapshot) {
			r.Constraints.Labels = map[string]string{"tier": "gold", "region": "eu", "gpu": "a100"}
		}, []string{"labels: need gpu=a100, have no gpu label", "labels: need region=eu, have region=us"}},
		{"labels match", func(r *types.BidRequest, _ *Snapshot) { r.Constraints.Labels = map[string]string{"region": "us"} }, nil},
		{"renewable", func(r *types.BidRequest, _ *Snapshot) { r.Constraints.RenewableOnly = true },
			[]string{"energy: job needs renewable energy"}},
		{"renewable ok", func(r *types.BidRequest, s *Snapshot) { r.Constraints.RenewableOnly, s.Energy.Renewable = true, true }, nil},
		{"price over max", func(r *types.BidRequest, _ *Snapshot) { r.Constraints.MaxPrice = types.Credit },
			[]string{"price: 2.5 per core-hour over max 1"}},
		{"price one micro-credit over max", func(r *types.BidRequest, _ *Snapshot) { r.Constraints.MaxPrice = 2_499_999 },
			[]string{"price: 2.5 per core-hour over max 2.499999"}},
		{"price at max", func(r *types.BidRequest, _ *Snapshot) { r.Constraints.MaxPrice = 2_500_000 }, nil},
		{"never fits", func(r *types.BidRequest, _ *Snapshot) { r.Resources.Memory = 900 << 40 },
			[]string{"memory: need 900 TiB, offered 8 GiB"}},
		{"busy", func(r *types.BidRequest, _ *Snapshot) { r.Resources = types.Resources{CPU: 2000, Memory: 4 * gib} },
			[]string{"cpu: need 2 cores, available 1 core (busy)", "memory: need 4 GiB, available 1 GiB (busy)"}},
		{"never fits beats busy", func(r *types.BidRequest, _ *Snapshot) { r.Resources = types.Resources{CPU: 2000, GPUs: 1} },
			[]string{"gpus: need 1, offered 0"}},
		{"negative", func(r *types.BidRequest, _ *Snapshot) { r.Resources.Disk = -1 },
			[]string{"resources: negative quantity requested (cpu 0.5 cores, memory 512 MiB, disk -1 B)"}},
		{"host busy", func(_ *types.BidRequest, s *Snapshot) { s.Host = "host busy: other processes use 63% CPU > 25%" },
			[]string{"host busy: other processes use 63% CPU > 25%"}},
		{"never fits beats host busy", func(r *types.BidRequest, s *Snapshot) { r.Resources.Memory, s.Host = 900<<40, "host busy" },
			[]string{"memory: need 900 TiB, offered 8 GiB"}},
		{"first failing check wins", func(r *types.BidRequest, _ *Snapshot) {
			r.Executor, r.Constraints.MaxPrice, r.Resources.Memory = "docker", types.Credit, 900<<40
		}, []string{`executor: "docker" not available (have process, wasm)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, s := testRequest(), testSnapshot()
			tt.modify(req, s)
			if got := Decide(DefaultChecks(), req, s); !slices.Equal(got, tt.want) {
				t.Errorf("Decide = %q\nwant     %q", got, tt.want)
			}
		})
	}
}

func TestChecksOrder(t *testing.T) {
	var names []string
	for _, c := range DefaultChecks() {
		names = append(names, c.Name())
	}
	if want := []string{"admission", "executor", "network", "labels", "energy", "price", "resources", "host"}; !slices.Equal(names, want) {
		t.Fatalf("checks = %v, want %v", names, want)
	}
}
