package node

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/opendms/dms/types"
)

// gpuToolTimeout bounds each vendor tool run (nvidia-smi can hang on a wedged driver).
const gpuToolTimeout = 10 * time.Second

// DetectHardware reports what the machine has: logical cores, CPU model and
// clock, total RAM, free disk on the volume holding dir (or its nearest
// existing parent), GOARCH/GOOS, and GPUs from nvidia-smi and rocm-smi.
//
// Detection is best effort: a quantity the platform does not report stays
// zero (cores fall back to runtime.NumCPU), and a GPU tool that is absent or
// fails counts as no GPU of that vendor. It is an error only when ctx is done
// or none of CPU, memory and disk could be read.
func DetectHardware(ctx context.Context, dir string) (types.Hardware, error) {
	hw := types.Hardware{Arch: runtime.GOARCH, OS: runtime.GOOS}
	errs := []error{
		detectCPU(ctx, &hw),
		detectMemory(ctx, &hw),
		detectDisk(ctx, dir, &hw),
	}
	if err := ctx.Err(); err != nil {
		return types.Hardware{}, fmt.Errorf("node: detecting hardware: %w", err)
	}
	if errs[0] != nil && errs[1] != nil && errs[2] != nil {
		return types.Hardware{}, fmt.Errorf("node: detecting hardware: %w", errors.Join(errs...))
	}
	hw.GPUs = append(nvidiaGPUs(ctx), amdGPUs(ctx)...)
	return hw, nil
}

func detectCPU(ctx context.Context, hw *types.Hardware) error {
	n, err := cpu.CountsWithContext(ctx, true)
	if err != nil || n <= 0 {
		n = runtime.NumCPU()
	}
	hw.Cores = n
	infos, err := cpu.InfoWithContext(ctx)
	if err != nil {
		return fmt.Errorf("cpu: %w", err)
	}
	for _, in := range infos {
		if hw.CPUModel == "" {
			hw.CPUModel = strings.TrimSpace(in.ModelName)
		}
		hw.CPUMHz = max(hw.CPUMHz, in.Mhz)
	}
	return nil
}

func detectMemory(ctx context.Context, hw *types.Hardware) error {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	hw.Memory = types.Bytes(vm.Total)
	return nil
}

func detectDisk(ctx context.Context, dir string, hw *types.Hardware) error {
	u, err := disk.UsageWithContext(ctx, existingAncestor(dir))
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	hw.Disk = types.Bytes(u.Free)
	return nil
}

// existingAncestor returns dir, or its nearest parent that exists, so the
// volume can be measured before the node's home is created.
func existingAncestor(dir string) string {
	p, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	for {
		if _, err := os.Stat(p); err == nil || filepath.Dir(p) == p {
			return p
		}
		p = filepath.Dir(p)
	}
}

// runTool runs a vendor tool if it is installed; ok is false when it is absent or fails.
func runTool(ctx context.Context, name string, args ...string) (out []byte, ok bool) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, gpuToolTimeout)
	defer cancel()
	out, err = exec.CommandContext(ctx, path, args...).Output()
	return out, err == nil
}

func nvidiaGPUs(ctx context.Context) []types.GPU {
	out, ok := runTool(ctx, "nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits")
	if !ok {
		return nil
	}
	return parseNvidiaSMI(out)
}

// parseNvidiaSMI reads "name, memory MiB" lines; lines it cannot read are skipped.
func parseNvidiaSMI(out []byte) []types.GPU {
	var gpus []types.GPU
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, memMiB, ok := strings.Cut(sc.Text(), ",")
		mib, err := strconv.ParseFloat(strings.TrimSpace(memMiB), 64)
		if !ok || err != nil {
			continue
		}
		gpus = append(gpus, types.GPU{Vendor: "nvidia", Model: strings.TrimSpace(name), Memory: types.Bytes(mib * (1 << 20))})
	}
	return gpus
}

func amdGPUs(ctx context.Context) []types.GPU {
	out, ok := runTool(ctx, "rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json")
	if !ok {
		return nil
	}
	return parseROCmSMI(out)
}

// parseROCmSMI reads rocm-smi's JSON: {"card0": {"Card series": ..., "VRAM
// Total Memory (B)": "..."}, "system": {...}}. Key names vary across
// versions, so it takes the first model key it knows; unreadable output means
// no GPUs.
func parseROCmSMI(out []byte) []types.GPU {
	var cards map[string]map[string]any
	if json.Unmarshal(out, &cards) != nil {
		return nil
	}
	var gpus []types.GPU
	for _, card := range cardNames(cards) {
		fields := cards[card]
		g := types.GPU{Vendor: "amd", Model: firstString(fields, "Card series", "Card Series", "Card model", "Card SKU")}
		if b, err := strconv.ParseInt(firstString(fields, "VRAM Total Memory (B)"), 10, 64); err == nil {
			g.Memory = types.Bytes(b)
		}
		gpus = append(gpus, g)
	}
	return gpus
}

// cardNames returns the "cardN" keys in card order.
func cardNames(cards map[string]map[string]any) []string {
	var names []string
	for k := range cards {
		if n, ok := strings.CutPrefix(k, "card"); ok && isDigits(n) {
			names = append(names, k)
		}
	}
	// card2 before card10: shorter numbers first, then by digits.
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b)) })
	return names
}

func isDigits(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func firstString(fields map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := fields[k].(string); ok && s != "" {
			return strings.TrimSpace(s)
		}
	}
	return ""
}
