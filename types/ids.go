package types

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/mr-tron/base58"
)

// JobID names a job across the network. It is chosen by the requester.
type JobID string

// AllocationID names one attempt to run a job on one node.
type AllocationID string

// NodeID is the full identity of a node: a stable UUID chosen at init, the
// libp2p PeerID and the did:key (both derived from the same Ed25519 key) and the
// CID of the node's latest signed capability record.
type NodeID struct {
	UUID          string `json:"uuid"`
	PeerID        string `json:"peer_id"`
	DID           string `json:"did"`
	CapabilityCID string `json:"capability_cid,omitempty"`
}

// ed25519 public key multicodec (0xed), varint-encoded.
var ed25519Multicodec = []byte{0xed, 0x01}

const didKeyPrefix = "did:key:z"

// DIDFromPublicKey returns the did:key for an Ed25519 public key.
func DIDFromPublicKey(pub ed25519.PublicKey) string {
	b := make([]byte, 0, len(ed25519Multicodec)+len(pub))
	b = append(b, ed25519Multicodec...)
	b = append(b, pub...)
	return didKeyPrefix + base58.Encode(b)
}

// PublicKeyFromDID parses a did:key holding an Ed25519 public key.
func PublicKeyFromDID(did string) (ed25519.PublicKey, error) {
	rest, ok := strings.CutPrefix(did, didKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a base58btc did:key", ErrBadDID, did)
	}
	b, err := base58.Decode(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDID, err)
	}
	if len(b) != len(ed25519Multicodec)+ed25519.PublicKeySize ||
		b[0] != ed25519Multicodec[0] || b[1] != ed25519Multicodec[1] {
		return nil, fmt.Errorf("%w: not an Ed25519 did:key", ErrBadDID)
	}
	return ed25519.PublicKey(b[len(ed25519Multicodec):]), nil
}

// ErrBadDID is returned for a DID that is not an Ed25519 did:key.
var ErrBadDID = errors.New("types: bad did:key")
