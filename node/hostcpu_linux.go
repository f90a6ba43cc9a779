package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// HostCPU returns the host's CPU sampler: /proc/stat for the host, and
// /proc/self/stat for the node's own process, which runs its wasm units.
// It reads them once to check they can be read.
func HostCPU() (CPUSampler, error) {
	s := procCPU{stat: "/proc/stat", self: "/proc/self/stat"}
	if _, err := s.CPUTimes(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIdleUnsupported, err)
	}
	return s, nil
}

// procCPU reads CPU times from procfs, in USER_HZ ticks (100 a second on
// every Linux architecture; the shares an idle-only node reads do not
// depend on it).
type procCPU struct{ stat, self string }

const userHZ = 100

func (p procCPU) CPUTimes() (CPUTimes, error) {
	stat, err := os.ReadFile(p.stat)
	if err != nil {
		return CPUTimes{}, err
	}
	total, busy, err := parseProcStat(stat)
	if err != nil {
		return CPUTimes{}, fmt.Errorf("%s: %w", p.stat, err)
	}
	self, err := os.ReadFile(p.self)
	if err != nil {
		return CPUTimes{}, err
	}
	own, err := parseSelfStat(self)
	if err != nil {
		return CPUTimes{}, fmt.Errorf("%s: %w", p.self, err)
	}
	return CPUTimes{Total: ticks(total), Busy: ticks(busy), Own: ticks(own)}, nil
}

func ticks(n uint64) time.Duration { return time.Duration(n) * (time.Second / userHZ) }

// parseProcStat reads the "cpu" line of /proc/stat (every core summed):
// user nice system idle iowait irq softirq steal [guest guest_nice]. Total
// is the first eight; busy leaves out idle, iowait and steal (time the
// hypervisor gave to other machines). Guest time is counted in user and
// nice already.
func parseProcStat(b []byte) (total, busy uint64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0, 0, errors.New("no cpu line of 8 counters")
	}
	var v [8]uint64
	for i := range v {
		if v[i], err = strconv.ParseUint(string(f[i+1]), 10, 64); err != nil {
			return 0, 0, err
		}
	}
	user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	busy = user + nice + system + irq + softirq
	return busy + idle + iowait + steal, busy, nil
}

// parseSelfStat reads utime + stime, fields 14 and 15 of /proc/self/stat,
// counted after the command name, which may hold spaces and parentheses.
func parseSelfStat(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := bytes.Fields(b[i+1:]) // from field 3, the state
	if len(f) < 13 {
		return 0, errors.New("too few fields")
	}
	utime, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseUint(string(f[12]), 10, 64)
	return utime + stime, err
}
