package node

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/opendms/dms/types"
)

// Offer is what the provider offers of the machine, at which price and under
// which conditions: the `offer:` section of the node's config file. CPU,
// Memory and Disk are either absolute ("2", "500m", "8GiB") or a share of what
// was detected ("75%"). All detected GPUs are offered.
type Offer struct {
	CPU    string            `yaml:"cpu"`    // cores: "2", "0.5", "500m", or "75%" of the logical cores
	Memory string            `yaml:"memory"` // "8GiB", or "50%" of RAM
	Disk   string            `yaml:"disk"`   // "20GiB", or "10%" of the free disk under the node's home
	Price  types.Credits     `yaml:"price"`  // per core-hour, >= 0
	Labels map[string]string `yaml:"labels"` // matched against a job's constraints.labels
	Energy EnergyConfig      `yaml:"energy"`
	Idle   IdleConfig        `yaml:"idle"` // bid only while the host's owner leaves its CPU idle
}

// DefaultOffer offers every core, half the RAM and a tenth of the free disk at
// 1 credit per core-hour, with no labels and non-renewable energy re-read
// every minute, whether or not the owner uses the machine (idle-only off,
// its defaults spelled out). A desktop stays usable (memory is what a busy
// machine runs short of first) and a job cannot fill the owner's disk.
func DefaultOffer() Offer {
	return Offer{
		CPU: "100%", Memory: "50%", Disk: "10%", Price: types.Credit, Energy: EnergyConfig{Refresh: "1m"},
		Idle: IdleConfig{Threshold: "25%", Period: defaultIdlePeriod.String(), StopWithin: defaultIdleStopWithin.String(), Policy: IdleStop},
	}
}

// Validate checks the offer without the hardware: quantities parse, the price
// is a non-negative number, label names are usable and the energy and idle
// sections are consistent. Every problem is reported, each as an *OfferError.
func (o Offer) Validate() error {
	_, cpuErr := parseShare("cpu", o.CPU, types.ParseCPU)
	_, memErr := parseShare("memory", o.Memory, types.ParseBytes)
	_, diskErr := parseShare("disk", o.Disk, types.ParseBytes)
	errs := []error{cpuErr, memErr, diskErr, o.validatePrice(), o.validateLabels(), o.Energy.Validate(), o.Idle.Validate()}
	return errors.Join(errs...)
}

func (o Offer) validatePrice() error {
	if o.Price < 0 {
		return &OfferError{"price", fmt.Errorf("%s is not a price: want credits per core-hour, 0 or more", o.Price)}
	}
	return nil
}

func (o Offer) validateLabels() error {
	for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			return &OfferError{"labels", fmt.Errorf("%q is not a label name: no spaces or '='", k)}
		}
	}
	return nil
}

// Resolve turns the offer into the resources the node registers, taking
// shares of hw. Offering more than the machine has is an error. When
// detection could not tell a quantity (zero in hw), a share of it is an error
// and an absolute value is taken as given.
func (o Offer) Resolve(hw types.Hardware) (types.Resources, error) {
	if err := o.Validate(); err != nil {
		return types.Resources{}, err
	}
	cpu, cpuErr := resolveShare("cpu", o.CPU, types.MilliCPU(hw.Cores)*1000, types.ParseCPU)
	mem, memErr := resolveShare("memory", o.Memory, hw.Memory, types.ParseBytes)
	disk, diskErr := resolveShare("disk", o.Disk, hw.Disk, types.ParseBytes)
	if err := errors.Join(cpuErr, memErr, diskErr); err != nil {
		return types.Resources{}, err
	}
	return types.Resources{CPU: cpu, Memory: mem, Disk: disk, GPUs: len(hw.GPUs)}, nil
}

// quantity is a resource amount that prints for people (MilliCPU, Bytes).
type quantity interface {
	~int64
	fmt.Stringer
}

// share is an offered quantity: a percentage of the machine or an absolute amount.
type share[T quantity] struct {
	percent  float64
	abs      T
	relative bool
}

func parseShare[T quantity](field, s string, parse func(string) (T, error)) (share[T], error) {
	if p, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
			return share[T]{}, &OfferError{field, fmt.Errorf("%q is not a share of the machine: want 0%% to 100%%", s)}
		}
		return share[T]{percent: v, relative: true}, nil
	}
	v, err := parse(s)
	if err != nil {
		return share[T]{}, &OfferError{field, fmt.Errorf("%w, or a share of the machine such as 50%%", err)}
	}
	return share[T]{abs: v}, nil
}

func resolveShare[T quantity](field, s string, total T, parse func(string) (T, error)) (T, error) {
	sh, err := parseShare(field, s, parse)
	switch {
	case err != nil:
		return 0, err
	case sh.relative && total <= 0:
		return 0, &OfferError{field, fmt.Errorf("%s of the machine, but detection could not tell the machine's %s: give an absolute amount", s, field)}
	case sh.relative:
		return T(math.Floor(float64(total) * sh.percent / 100)), nil
	case total > 0 && sh.abs > total:
		return 0, &OfferError{field, fmt.Errorf("%s is more than the machine has (%s)", sh.abs, total)}
	}
	return sh.abs, nil
}
