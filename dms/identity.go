package dms

import (
	"crypto/ed25519"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
)

func peerIDOf(key ed25519.PrivateKey) (string, error) {
	pk, err := crypto.UnmarshalEd25519PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("dms: identity key: %w", err)
	}
	id, err := peer.IDFromPrivateKey(pk)
	if err != nil {
		return "", fmt.Errorf("dms: peer ID: %w", err)
	}
	return id.String(), nil
}

// admittedPeerID returns the PeerID of an admission entry: a did:key, or a
// PeerID in any encoding peer.Decode accepts. DMS identities are Ed25519
// keys, so a PeerID of another key type can never be a requester's.
func admittedPeerID(entry string) (string, error) {
	if strings.HasPrefix(entry, "did:") {
		pub, err := types.PublicKeyFromDID(entry)
		if err != nil {
			return "", err
		}
		pk, err := crypto.UnmarshalEd25519PublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("%q: %w", entry, err)
		}
		id, err := peer.IDFromPublicKey(pk)
		if err != nil {
			return "", fmt.Errorf("%q: %w", entry, err)
		}
		return id.String(), nil
	}
	id, err := peer.Decode(entry)
	if err != nil {
		return "", fmt.Errorf("%q is neither a did:key nor a PeerID: %w", entry, err)
	}
	if pk, err := id.ExtractPublicKey(); err != nil || pk.Type() != crypto.Ed25519 {
		return "", fmt.Errorf("%q is not the PeerID of an Ed25519 key (12D3KooW...), so no DMS node has it", entry)
	}
	return id.String(), nil
}

// capabilityRecord builds what the node publishes about itself from its
// measured hardware and benchmark and the provider's offer.
func capabilityRecord(key ed25519.PrivateKey, offer node.Offer, hw types.Hardware, bench types.Benchmark, energy types.Energy, executors []string, now time.Time) (types.CapabilityRecord, error) {
	offered, err := offer.Resolve(hw)
	if err != nil {
		return types.CapabilityRecord{}, err
	}
	pid, err := peerIDOf(key)
	if err != nil {
		return types.CapabilityRecord{}, err
	}
	if hw.Arch == "" {
		hw.Arch, hw.OS = runtime.GOARCH, runtime.GOOS
	}
	return types.CapabilityRecord{
		PeerID: pid, DID: types.DIDFromPublicKey(key.Public().(ed25519.PublicKey)),
		Hardware: hw, Benchmark: bench, Offered: offered, Price: offer.Price,
		Labels: offer.Labels, Energy: energy, Executors: executors, IdleOnly: offer.Idle.Enabled, IssuedAt: now.UTC(),
	}, nil
}

// capabilityTTL is how long a signed capability record is valid: a node
// re-signs it when its offer changes and at every start.
const capabilityTTL = 24 * time.Hour

// signRecord seals the record; its CID names the record in the NodeID.
func signRecord(key ed25519.PrivateKey, rec types.CapabilityRecord, now time.Time) ([]byte, string, error) {
	env, err := types.Seal(key, &rec, now, capabilityTTL)
	if err != nil {
		return nil, "", err
	}
	b, err := env.Marshal()
	if err != nil {
		return nil, "", err
	}
	return b, types.CIDOf(b).String(), nil
}

// signedID signs rec and returns the node's identity, whose CapabilityCID
// names the signed record returned with it: the blob to publish. (Each
// signing seals a fresh nonce, so a record signed again has another CID.)
func signedID(key ed25519.PrivateKey, uuid string, rec types.CapabilityRecord, now time.Time) (types.NodeID, []byte, error) {
	b, c, err := signRecord(key, rec, now)
	if err != nil {
		return types.NodeID{}, nil, err
	}
	return types.NodeID{UUID: uuid, PeerID: rec.PeerID, DID: rec.DID, CapabilityCID: c}, b, nil
}
