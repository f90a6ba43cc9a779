//go:build !linux

package node

// HostCPU returns the host's CPU sampler; it reads procfs, so only Linux
// has one, and elsewhere an idle-only node refuses to start.
func HostCPU() (CPUSampler, error) { return nil, ErrIdleUnsupported }
