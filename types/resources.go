package types

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MilliCPU is a CPU quantity in thousandths of a core: 1000 is one core.
type MilliCPU int64

// String formats m as cores, e.g. "1.5 cores".
func (m MilliCPU) String() string {
	if m == 1000 {
		return "1 core"
	}
	if m%1000 == 0 {
		return fmt.Sprintf("%d cores", m/1000)
	}
	return fmt.Sprintf("%.3g cores", float64(m)/1000)
}

// ParseCPU parses a CPU quantity: cores as a number ("2", "0.5") or
// millicores with an "m" suffix ("500m").
func ParseCPU(s string) (MilliCPU, error) {
	t := strings.TrimSpace(s)
	scale := 1000.0
	if rest, ok := strings.CutSuffix(t, "m"); ok {
		t, scale = rest, 1
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v*scale > math.MaxInt32 {
		return 0, fmt.Errorf("%w: cpu %q (want cores such as 2 or 0.5, or millicores such as 500m)", ErrBadSize, s)
	}
	return MilliCPU(math.Round(v * scale)), nil
}

// MarshalJSON writes m as cores (a JSON number), the unit people write.
func (m MilliCPU) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(m)/1000, 'f', -1, 64)), nil
}

// UnmarshalJSON accepts cores as a number or any string ParseCPU accepts.
func (m *MilliCPU) UnmarshalJSON(data []byte) error {
	return m.UnmarshalText([]byte(strings.Trim(string(data), `"`)))
}

// UnmarshalText accepts what ParseCPU accepts (YAML uses it).
func (m *MilliCPU) UnmarshalText(text []byte) error {
	v, err := ParseCPU(string(text))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Resources is a quantity of compute: what a job needs, what a node offers,
// what a lock holds. All fields are non-negative.
type Resources struct {
	CPU    MilliCPU `json:"cpu"`
	Memory Bytes    `json:"memory"`
	Disk   Bytes    `json:"disk"`
	GPUs   int      `json:"gpus,omitempty"`
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{CPU: r.CPU + o.CPU, Memory: r.Memory + o.Memory, Disk: r.Disk + o.Disk, GPUs: r.GPUs + o.GPUs}
}

// Sub returns r - o. The result may be negative in some field; use Fits first
// when that must not happen.
func (r Resources) Sub(o Resources) Resources {
	return Resources{CPU: r.CPU - o.CPU, Memory: r.Memory - o.Memory, Disk: r.Disk - o.Disk, GPUs: r.GPUs - o.GPUs}
}

// Fits reports whether r fits within avail in every dimension.
func (r Resources) Fits(avail Resources) bool {
	return r.CPU <= avail.CPU && r.Memory <= avail.Memory && r.Disk <= avail.Disk && r.GPUs <= avail.GPUs
}

// IsZero reports whether r is the zero quantity.
func (r Resources) IsZero() bool { return r == Resources{} }

// Negative reports whether any field of r is below zero.
func (r Resources) Negative() bool {
	return r.CPU < 0 || r.Memory < 0 || r.Disk < 0 || r.GPUs < 0
}

// Shortfall explains, one reason per dimension, why need does not fit in
// offered: "memory: need 900 TiB, offered 8 GiB". It is empty when need fits.
func (r Resources) Shortfall(offered Resources) []string {
	var out []string
	if r.CPU > offered.CPU {
		out = append(out, fmt.Sprintf("cpu: need %s, offered %s", r.CPU, offered.CPU))
	}
	if r.Memory > offered.Memory {
		out = append(out, fmt.Sprintf("memory: need %s, offered %s", r.Memory, offered.Memory))
	}
	if r.Disk > offered.Disk {
		out = append(out, fmt.Sprintf("disk: need %s, offered %s", r.Disk, offered.Disk))
	}
	if r.GPUs > offered.GPUs {
		out = append(out, fmt.Sprintf("gpus: need %d, offered %d", r.GPUs, offered.GPUs))
	}
	return out
}

// String formats r for people.
func (r Resources) String() string {
	s := fmt.Sprintf("cpu %s, memory %s, disk %s", r.CPU, r.Memory, r.Disk)
	if r.GPUs > 0 {
		s += fmt.Sprintf(", %d gpus", r.GPUs)
	}
	return s
}
