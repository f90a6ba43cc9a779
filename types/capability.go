package types

import "time"

// Hardware is what capability detection found on a machine.
type Hardware struct {
	Cores    int     `json:"cores"`
	CPUModel string  `json:"cpu_model"`
	CPUMHz   float64 `json:"cpu_mhz"`
	Memory   Bytes   `json:"memory"`
	Disk     Bytes   `json:"disk"` // free space on the volume holding the node's home
	Arch     string  `json:"arch"`
	OS       string  `json:"os"`
	GPUs     []GPU   `json:"gpus,omitempty"`
}

// GPU is one accelerator, as reported by its vendor tool.
type GPU struct {
	Vendor string `json:"vendor"`
	Model  string `json:"model"`
	Memory Bytes  `json:"memory"`
}

// Benchmark holds the results of the node's micro-benchmarks.
type Benchmark struct {
	CPUSingle      float64   `json:"cpu_single"`      // score: million hash rounds per second, one core
	CPUAll         float64   `json:"cpu_all"`         // same, all cores together
	MemoryMBps     float64   `json:"memory_mbps"`     // memory copy bandwidth, MB/s
	DiskWriteMBps  float64   `json:"disk_write_mbps"` // sequential synced write rate, MB/s
	MeasuredAt     time.Time `json:"measured_at"`
	DurationMillis int64     `json:"duration_ms"`
}

// Score condenses a benchmark into one number for ranking bids: the all-core
// CPU score, the dimension most jobs are bound by.
func (b Benchmark) Score() float64 { return b.CPUAll }

// Energy describes the power a node runs on, as its provider states it.
type Energy struct {
	Renewable       bool    `json:"renewable"`
	CarbonIntensity float64 `json:"carbon_intensity,omitempty"` // gCO2e/kWh; 0 means unknown
}

// CapabilityRecord is what a node publishes about itself. Signed in an
// Envelope, its CID is part of the node's NodeID.
type CapabilityRecord struct {
	PeerID    string            `json:"peer_id"`
	DID       string            `json:"did"`
	Hardware  Hardware          `json:"hardware"`
	Benchmark Benchmark         `json:"benchmark"`
	Offered   Resources         `json:"offered"`
	Price     Credits           `json:"price"` // per core-hour
	Labels    map[string]string `json:"labels,omitempty"`
	Energy    Energy            `json:"energy"`
	Executors []string          `json:"executors"`
	// IdleOnly: the node bids only while its host's owner leaves the CPU
	// idle (offer.idle), and stops its units when the owner needs it.
	IdleOnly bool      `json:"idle_only,omitempty"`
	IssuedAt time.Time `json:"issued_at"`
}
