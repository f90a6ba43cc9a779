package p2p

import (
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// maxRatedPeers bounds the publishers a rateLimiter tracks at once, about
// 1 MB. Only publishers active within the last few seconds are tracked
// (a drained bucket refills in (burst+slack)/rate, 3s with the defaults,
// and a sweep runs every second), so filling the table takes over 2000 new
// publisher identities a second; past it, new publishers are refused as
// overloaded until idle ones age out. The host's own bucket is apart.
const maxRatedPeers = 10_000

// rateSlack is how much delivery jitter a remote publisher's bucket absorbs.
// A host holds its own publications to rate and burst; the same messages
// reach other hosts with delays that vary, by up to a second on a loaded
// machine, so their buckets hold rate×rateSlack more tokens: what an honest
// publisher's host let out is not refused downstream.
const rateSlack = time.Second

// rateLimiter is a token bucket per publisher: rate tokens a second, up to
// burst for the host itself and burst + rate×rateSlack for others. A bucket
// that has refilled is the same as no bucket, so buckets of publishers idle
// that long are dropped (at most once a second, in a sweep over the table),
// which bounds memory by the publishers of the last few seconds, and by
// maxPeers. Safe for concurrent use.
type rateLimiter struct {
	self      peer.ID
	rate      float64
	ownBurst  float64
	burst     float64 // for others
	maxPeers  int
	mu        sync.Mutex
	own       bucket
	buckets   map[peer.ID]*bucket
	nextSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

func newRateLimiter(self peer.ID, rate float64, burst, maxPeers int) *rateLimiter {
	return &rateLimiter{
		self: self, rate: rate, ownBurst: float64(burst), burst: float64(burst) + rate*rateSlack.Seconds(),
		maxPeers: maxPeers, own: bucket{tokens: float64(burst)}, buckets: make(map[peer.ID]*bucket),
	}
}

// allow takes n tokens from p's bucket at now. It returns "" if there
// were as many, ReasonRateLimited if not (none is taken), or
// ReasonOverloaded if p has no bucket and the table is full.
func (l *rateLimiter) allow(p peer.ID, n int, now time.Time) Reason {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p == l.self {
		return l.own.take(now, float64(n), l.rate, l.ownBurst)
	}
	if !now.Before(l.nextSweep) {
		l.sweep(now)
	}
	b, ok := l.buckets[p]
	if !ok {
		if len(l.buckets) >= l.maxPeers {
			return ReasonOverloaded
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[p] = b
	}
	return b.take(now, float64(n), l.rate, l.burst)
}

// admit is allow as an error: a *RejectError, or nil when p had a token.
func (l *rateLimiter) admit(p peer.ID, now time.Time) error { return l.admitN(p, 1, now) }

// admitN is admit for n tokens at once: all are taken, or none.
func (l *rateLimiter) admitN(p peer.ID, n int, now time.Time) error {
	switch l.allow(p, n, now) {
	case ReasonRateLimited:
		return reject(ReasonRateLimited, fmt.Errorf("%w: publisher %s", ErrRateLimited, p))
	case ReasonOverloaded:
		return reject(ReasonOverloaded, fmt.Errorf("%w: rate table full, publisher %s", ErrOverloaded, p))
	}
	return nil
}

// take refills b and takes n tokens from it, or returns ReasonRateLimited.
func (b *bucket) take(now time.Time, n, rate, burst float64) Reason {
	b.refill(now, rate, burst)
	if b.tokens < n {
		return ReasonRateLimited
	}
	b.tokens -= n
	return ""
}

// refill adds the tokens earned since b.at; a clock that went back earns none.
func (b *bucket) refill(now time.Time, rate, burst float64) {
	if b.at.IsZero() {
		b.at = now
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.at = now
	}
}

// sweep drops the buckets that are full again.
func (l *rateLimiter) sweep(now time.Time) {
	for p, b := range l.buckets {
		if b.refill(now, l.rate, l.burst); b.tokens >= l.burst {
			delete(l.buckets, p)
		}
	}
	l.nextSweep = now.Add(sweepEvery)
}

const sweepEvery = time.Second

// tracked returns how many other publishers have a bucket.
func (l *rateLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
