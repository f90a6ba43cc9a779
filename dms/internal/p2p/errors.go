package p2p

import "errors"

var (
	// ErrBadConfig means a Config field is out of range.
	ErrBadConfig = errors.New("p2p: bad config")
	// ErrClosed means the Host was closed.
	ErrClosed = errors.New("p2p: host closed")
	// ErrBadPeer means a peer ID or multiaddr could not be parsed, or an
	// address names another peer than the one asked for.
	ErrBadPeer = errors.New("p2p: bad peer id or address")
	// ErrSelf means a request was addressed to the local host; deliver it
	// locally instead.
	ErrSelf = errors.New("p2p: request addressed to self")
	// ErrFrameTooLarge means a length prefix announced more than the limit.
	ErrFrameTooLarge = errors.New("p2p: frame too large")
	// ErrNoReply means the stream ended or was reset before a reply arrived:
	// the peer refused, failed, or went away.
	ErrNoReply = errors.New("p2p: peer did not reply")
	// ErrBadReply means a reply or pushed frame did not verify.
	ErrBadReply = errors.New("p2p: bad reply")
	// ErrStreamClosed means a send after the stream handler returned.
	ErrStreamClosed = errors.New("p2p: stream closed")
	// ErrWrongKind means a message kind the protocol or topic does not carry.
	ErrWrongKind = errors.New("p2p: unexpected message kind")
	// ErrSenderMismatch means an envelope was not signed by the peer that sent
	// or published it.
	ErrSenderMismatch = errors.New("p2p: envelope not signed by its sender")
	// ErrRequesterMismatch means a bid request names a requester other than
	// its publisher.
	ErrRequesterMismatch = errors.New("p2p: bid request names another requester than its publisher")
	// ErrExpiryTooFar means an envelope expires further ahead than MaxTTL.
	ErrExpiryTooFar = errors.New("p2p: envelope expiry too far ahead")
	// ErrReplayed means an envelope's nonce was already seen.
	ErrReplayed = errors.New("p2p: envelope replayed")
	// ErrRateLimited means a publisher sent bid requests faster than its
	// rate limit allows.
	ErrRateLimited = errors.New("p2p: publisher over its bid-request rate")
	// ErrOverloaded means the host refused work it had no room for.
	ErrOverloaded = errors.New("p2p: overloaded")
	// ErrBadCID means a content ID could not be parsed.
	ErrBadCID = errors.New("p2p: bad cid")
	// ErrBlobNotFound means the peer does not hold the blob.
	ErrBlobNotFound = errors.New("p2p: blob not found")
	// ErrBlobTooLarge means the blob is larger than a size limit.
	ErrBlobTooLarge = errors.New("p2p: blob over size limit")
	// ErrCallStream means a call failed with its call stream, or could not
	// open one: the call may or may not have run; another instance may
	// take it.
	ErrCallStream = errors.New("p2p: call stream broken")
	// ErrNoRecord means a DHT lookup found no record under the key.
	ErrNoRecord = errors.New("p2p: no such record")
	// ErrBadRecord means a DHT record was refused: not under a key of
	// its namespace, malformed, too large, not signed by the peer its key
	// names, too old, or sealed with another key than its reader's.
	ErrBadRecord = errors.New("p2p: bad record")
	// errNilRequest is a programming error: a request needs a message.
	errNilRequest = errors.New("p2p: request without a message")
)
