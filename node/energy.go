package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/types"
)

// EnergyConfig says what power the node runs on: static values, or a File or
// a Command that states it and is re-read every Refresh while the node runs.
// A file or command prints {renewable: bool, carbon_intensity: N} as YAML or
// JSON; renewable is required, carbon_intensity (gCO2e/kWh) is optional.
type EnergyConfig struct {
	Renewable       bool    `yaml:"renewable"`
	CarbonIntensity float64 `yaml:"carbon_intensity"`
	File            string  `yaml:"file"`    // optional; replaces the static values
	Command         string  `yaml:"command"` // optional; run with /bin/sh -c, 10s timeout
	Refresh         string  `yaml:"refresh"` // Go duration, default 1m
}

const (
	defaultEnergyRefresh = time.Minute
	energyCommandTimeout = 10 * time.Second
	energyOutputLimit    = 64 << 10
)

// Validate checks the energy section: a non-negative carbon intensity, at
// most one of file and command, and a positive refresh interval.
func (c EnergyConfig) Validate() error {
	var errs []error
	if !validIntensity(c.CarbonIntensity) {
		errs = append(errs, &OfferError{"energy.carbon_intensity", fmt.Errorf("%v: want gCO2e/kWh, 0 (unknown) or more", c.CarbonIntensity)})
	}
	if c.File != "" && c.Command != "" {
		errs = append(errs, &OfferError{"energy", errors.New("set file or command, not both")})
	}
	if _, err := c.RefreshInterval(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RefreshInterval returns how often File or Command should be re-read.
func (c EnergyConfig) RefreshInterval() (time.Duration, error) {
	if c.Refresh == "" {
		return defaultEnergyRefresh, nil
	}
	d, err := time.ParseDuration(c.Refresh)
	if err != nil || d <= 0 {
		return 0, &OfferError{"energy.refresh", fmt.Errorf("%q is not a positive duration such as 30s or 5m", c.Refresh)}
	}
	return d, nil
}

// ReadEnergy returns the energy the node runs on now: read from c.File or
// c.Command when set, else the static values. Errors wrap ErrEnergy.
func ReadEnergy(ctx context.Context, c EnergyConfig) (types.Energy, error) {
	var (
		out []byte
		err error
		src string
	)
	switch {
	case c.File != "":
		src = "file " + c.File
		out, err = readFileLimited(c.File)
	case c.Command != "":
		src = fmt.Sprintf("command %q", c.Command)
		out, err = runEnergyCommand(ctx, c.Command, energyCommandTimeout)
	default:
		return types.Energy{Renewable: c.Renewable, CarbonIntensity: c.CarbonIntensity}, nil
	}
	if err != nil {
		return types.Energy{}, fmt.Errorf("%w: %s: %w", ErrEnergy, src, err)
	}
	e, err := parseEnergy(out)
	if err != nil {
		return types.Energy{}, fmt.Errorf("%w: %s: %w", ErrEnergy, src, err)
	}
	return e, nil
}

func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, energyOutputLimit+1))
	if err == nil && len(b) > energyOutputLimit {
		err = errOutputTooLarge
	}
	return b, err
}

var (
	errOutputTooLarge = fmt.Errorf("more than %d KiB", energyOutputLimit>>10)
	errCommandTimeout = errors.New("command timed out")
)

// runEnergyCommand runs command under /bin/sh with a timeout and returns its
// standard output. Output past energyOutputLimit fails the command.
func runEnergyCommand(ctx context.Context, command string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%w after %s", errCommandTimeout, timeout))
	defer cancel()
	stdout, stderr := &limitedBuffer{max: energyOutputLimit}, &limitedBuffer{max: energyOutputLimit}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second // a background child holding the pipes open cannot stall us
	err := cmd.Run()
	switch {
	case stdout.over || stderr.over:
		return nil, errOutputTooLarge
	case ctx.Err() != nil:
		return nil, context.Cause(ctx)
	case err != nil && stderr.buf.Len() > 0:
		return nil, fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.buf.Bytes()))
	case err != nil:
		return nil, err
	}
	return stdout.buf.Bytes(), nil
}

// limitedBuffer keeps up to max bytes and fails the write past them, which
// stops the copy from the child's pipe.
type limitedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		b.over = true
		return 0, errOutputTooLarge
	}
	return b.buf.Write(p)
}

// parseEnergy reads {renewable, carbon_intensity} as YAML or JSON, strictly.
func parseEnergy(b []byte) (types.Energy, error) {
	var doc struct {
		Renewable       *bool   `yaml:"renewable"`
		CarbonIntensity float64 `yaml:"carbon_intensity"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return types.Energy{}, errors.New("empty: want {renewable: true|false, carbon_intensity: N}")
	case err != nil:
		return types.Energy{}, err
	case doc.Renewable == nil:
		return types.Energy{}, errors.New("renewable is missing: want {renewable: true|false, carbon_intensity: N}")
	case !validIntensity(doc.CarbonIntensity):
		return types.Energy{}, fmt.Errorf("carbon_intensity %v: want gCO2e/kWh, 0 (unknown) or more", doc.CarbonIntensity)
	}
	return types.Energy{Renewable: *doc.Renewable, CarbonIntensity: doc.CarbonIntensity}, nil
}

func validIntensity(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }
