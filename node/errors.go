package node

import (
	"errors"
	"fmt"
)

var (
	// ErrInsufficientCapability means a hold or lock does not fit in what the
	// node has available; the error wraps the dimensions that fall short.
	ErrInsufficientCapability = errors.New("node: insufficient capability")
	// ErrStaleEpoch means a request names a lock by an epoch that is not the
	// lock's current one: it refers to a lock that was released or replaced.
	ErrStaleEpoch = errors.New("node: stale epoch")
	// ErrLockExpired means a lock's expiry passed before its allocation started.
	ErrLockExpired = errors.New("node: lock expired")
	// ErrUnknownAllocation means no lock is held under an allocation ID.
	ErrUnknownAllocation = errors.New("node: unknown allocation")
	// ErrDuplicateAllocation means a lock already exists under an allocation ID.
	ErrDuplicateAllocation = errors.New("node: duplicate allocation")
	// ErrAlreadyRunning means Start was called for an allocation already running.
	ErrAlreadyRunning = errors.New("node: allocation already running")
	// ErrInvalidReservation means a hold or lock was asked with negative
	// resources, or with a lifetime that ends before it begins.
	ErrInvalidReservation = errors.New("node: invalid reservation")
	// ErrNoHold means a lock was asked for an allocation no bid's hold
	// backs (never bid, already taken, dropped or ended).
	ErrNoHold = errors.New("node: no bid's hold")
	// ErrTooManyHolds means a requester, or the node, has as many holds as
	// HoldPolicy allows.
	ErrTooManyHolds = errors.New("node: too many holds")
	// ErrOverShare means a hold would take a requester's claims beyond its
	// share of the node while that room is wanted (HoldPolicy.Share). It
	// is a kind of ErrInsufficientCapability.
	ErrOverShare = fmt.Errorf("%w: over the requester's share", ErrInsufficientCapability)
	// ErrEnergy means the energy source (file or command) could not be read.
	ErrEnergy = errors.New("node: cannot read energy")
	// ErrBlobNotFound means a peer answered that it does not hold a blob
	// (Network.FetchBlob).
	ErrBlobNotFound = errors.New("node: peer does not hold the blob")
	// ErrInputUnavailable means no source of one of a task's input files
	// had it: the allocation fails, the node's fault (another node may
	// find it).
	ErrInputUnavailable = errors.New("node: input file unavailable")
	// ErrIdleUnsupported means the host's CPU use cannot be read, which
	// an idle-only node needs: it reads Linux's procfs.
	ErrIdleUnsupported = errors.New("node: idle_only needs the host's CPU use from Linux's /proc")
	// ErrReceiptRefused means a requester refused a receipt for good (it
	// does not match its view, or names what is not its); the error says
	// why. Any other error from Network.SendReceipt is tried again.
	ErrReceiptRefused = errors.New("node: receipt refused")
)

// OfferError is a problem with one field of the provider's offer. Field is
// the YAML path under the offer, e.g. "memory" or "energy.refresh".
type OfferError struct {
	Field string
	Err   error
}

func (e *OfferError) Error() string { return "offer." + e.Field + ": " + e.Err.Error() }

// Unwrap returns the underlying problem (e.g. types.ErrBadSize).
func (e *OfferError) Unwrap() error { return e.Err }
