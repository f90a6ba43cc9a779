package p2p

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// publisher is a key and its PeerID.
type publisher struct {
	key ed25519.PrivateKey
	id  peer.ID
}

func newPublisher(t testing.TB) publisher {
	t.Helper()
	k := newKey(t)
	pub, err := crypto.UnmarshalEd25519PublicKey(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return publisher{key: k, id: id}
}

// seal makes p's record of value for cacheKey, dated at.
func (p publisher) seal(t testing.TB, cacheKey string, value []byte, at time.Time) (string, []byte) {
	t.Helper()
	key := cacheDHTKey(cacheKey, p.id)
	rec, err := sealCacheRecord(p.key, key, cacheSealKey(cacheKey), value, at)
	if err != nil {
		t.Fatal(err)
	}
	return key, rec
}

// TestCacheRecordRoundTrip: a record opens, under its key, to its value.
func TestCacheRecordRoundTrip(t *testing.T) {
	a := newPublisher(t)
	now := time.Now()
	for _, value := range [][]byte{nil, []byte(`{"result":{"exit_code":0}}`), bytes.Repeat([]byte{7}, MaxCacheRecordSize-minCacheRecord)} {
		key, rec := a.seal(t, "k1", value, now)
		if err := (cacheValidator{}).Validate(key, rec); err != nil {
			t.Fatalf("a record of %d bytes: %v", len(value), err)
		}
		got, err := openCacheRecord(key, cacheSealKey("k1"), rec, now)
		if err != nil || !bytes.Equal(got, value) {
			t.Fatalf("opened %d bytes, %v; want the %d put", len(got), err, len(value))
		}
		if bytes.Contains(rec, []byte("exit_code")) {
			t.Fatal("the value is in the record in clear")
		}
	}
	if _, err := sealCacheRecord(a.key, cacheDHTKey("k1", a.id), cacheSealKey("k1"), make([]byte, MaxCacheRecordSize), now); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("a value too large for a record was sealed: %v", err)
	}
}

// TestCacheRecordRefused: the validator refuses whatever its publisher did
// not sign for its key as it is: another signer, another key, any byte
// changed, a truncated or oversized record, garbage, keys not of the
// namespace's form.
func TestCacheRecordRefused(t *testing.T) {
	a, m := newPublisher(t), newPublisher(t)
	now := time.Now()
	key, rec := a.seal(t, "k1", []byte("a's result"), now)
	flip := func(i int) []byte {
		b := bytes.Clone(rec)
		b[i] ^= 1
		return b
	}
	_, mRec := m.seal(t, "k1", []byte("m's lie"), now)
	byM, err := sealCacheRecord(m.key, key, cacheSealKey("k1"), []byte("m's lie"), now) // under a's key
	if err != nil {
		t.Fatal(err)
	}
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secpID, err := peer.IDFromPrivateKey(secp)
	if err != nil {
		t.Fatal(err)
	}
	locator := strings.Split(key, "/")[2]
	oversized := append(bytes.Clone(rec), make([]byte, MaxCacheRecordSize)...)
	for _, tc := range []struct {
		name, key string
		rec       []byte
	}{
		{"signed by m under a's key", key, byM},
		{"m's record moved under a's key", key, mRec},
		{"a's record moved to another cache key", cacheDHTKey("k2", a.id), rec},
		{"a's record moved to m's key", cacheDHTKey("k1", m.id), rec},
		{"version changed", key, flip(0)},
		{"date changed", key, flip(5)},
		{"nonce changed", key, flip(cacheHeaderSize)},
		{"ciphertext changed", key, flip(cacheHeaderSize + cacheNonceSize + 1)},
		{"signature changed", key, flip(len(rec) - 1)},
		{"truncated", key, rec[:len(rec)-1]},
		{"too short", key, rec[:minCacheRecord-1]},
		{"oversized", key, oversized},
		{"empty", key, nil},
		{"garbage", key, bytes.Repeat([]byte{0xa5}, 200)},
		{"another namespace", "/pk/" + locator + "/" + a.id.String(), rec},
		{"no publisher", "/dmscache/" + locator, rec},
		{"publisher not a PeerID", "/dmscache/" + locator + "/someone", rec},
		{"publisher not canonical", "/dmscache/" + locator + "/" + peer.ToCid(a.id).String(), rec},
		{"locator in upper case", "/dmscache/" + strings.ToUpper(locator) + "/" + a.id.String(), rec},
		{"locator short", "/dmscache/" + locator[:62] + "/" + a.id.String(), rec},
		{"locator not hex", "/dmscache/" + strings.Repeat("z", 64) + "/" + a.id.String(), rec},
		{"extra segment", key + "/x", rec},
		{"a secp256k1 publisher", cacheDHTKey("k1", secpID), rec},
	} {
		if err := (cacheValidator{}).Validate(tc.key, tc.rec); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: Validate = %v, want ErrBadRecord", tc.name, err)
		}
		if _, err := openCacheRecord(tc.key, cacheSealKey("k1"), tc.rec, now); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: opened: %v", tc.name, err)
		}
	}
}

// TestCacheRecordOpen: a reader refuses what the DHT's validator cannot
// see: a record sealed with another cache key's seal (its publisher's
// mistake) or older than cacheRecordMaxAge.
func TestCacheRecordOpen(t *testing.T) {
	a := newPublisher(t)
	now := time.Now()
	key := cacheDHTKey("k1", a.id)
	wrongSeal, err := sealCacheRecord(a.key, key, cacheSealKey("k2"), []byte("v"), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := (cacheValidator{}).Validate(key, wrongSeal); err != nil {
		t.Fatalf("the validator needs no seal: %v", err)
	}
	if _, err := openCacheRecord(key, cacheSealKey("k1"), wrongSeal, now); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("a record sealed with another key opened: %v", err)
	}
	_, old := a.seal(t, "k1", []byte("v"), now.Add(-cacheRecordMaxAge-time.Minute))
	if _, err := openCacheRecord(key, cacheSealKey("k1"), old, now); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("a record past its age opened: %v", err)
	}
	if _, err := openCacheRecord(key, cacheSealKey("k1"), old, now.Add(-2*time.Minute)); err != nil {
		t.Fatalf("a record within its age: %v", err)
	}
}

// TestCacheRecordSelect: the newest valid record wins, whatever the
// order; an invalid one never does.
func TestCacheRecordSelect(t *testing.T) {
	a, m := newPublisher(t), newPublisher(t)
	now := time.Now()
	key, older := a.seal(t, "k1", []byte("old"), now.Add(-time.Hour))
	_, newer := a.seal(t, "k1", []byte("new"), now)
	forged, err := sealCacheRecord(m.key, key, cacheSealKey("k1"), []byte("newest, forged"), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		values [][]byte
		want   int
	}{
		{[][]byte{older, newer}, 1},
		{[][]byte{newer, older}, 0},
		{[][]byte{forged, older, newer}, 2},
		{[][]byte{newer, forged}, 0},
		{[][]byte{[]byte("garbage"), older}, 1},
	} {
		got, err := (cacheValidator{}).Select(key, tc.values)
		if err != nil || got != tc.want {
			t.Errorf("Select = %d, %v; want %d", got, err, tc.want)
		}
	}
	if _, err := (cacheValidator{}).Select(key, [][]byte{forged, []byte("garbage")}); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("Select among invalid records: %v", err)
	}
}

// FuzzCacheRecord: the validator never panics, and accepts a record only
// under the one key its signer (a fixed key here) signed records for.
func FuzzCacheRecord(f *testing.F) {
	var a publisher
	a.key = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	pub, err := crypto.UnmarshalEd25519PublicKey(a.key.Public().(ed25519.PublicKey))
	if err != nil {
		f.Fatal(err)
	}
	if a.id, err = peer.IDFromPublicKey(pub); err != nil {
		f.Fatal(err)
	}
	key, rec := a.seal(f, "k1", []byte("a's result"), time.Unix(1e9, 0))
	f.Add(key, rec)
	f.Add(key, rec[:minCacheRecord])
	f.Add("/dmscache/x/y", []byte{1})
	f.Fuzz(func(t *testing.T, k string, v []byte) {
		if err := (cacheValidator{}).Validate(k, v); err == nil && k != key {
			t.Fatalf("accepted a record under %q, where nobody signed one", k)
		}
	})
}

// acceptAll is a validator that takes any record: a hostile DHT server's.
type acceptAll struct{}

func (acceptAll) Validate(string, []byte) error        { return nil }
func (acceptAll) Select(string, [][]byte) (int, error) { return 0, nil }

// TestCacheRecordsOverDHT: a record one host puts is found by another;
// one nobody put is a miss; a hostile DHT server holding a forged record
// under an honest publisher's key cannot make a reader take it.
func TestCacheRecordsOverDHT(t *testing.T) {
	hosts := startNetwork(t, 4)
	for _, h := range hosts {
		waitFor(t, 20*time.Second, "a routing table of 3", func() bool { return h.dht.RoutingTable().Size() >= 3 })
	}
	nsval := hosts[0].dht.Validator.(record.NamespacedValidator)
	for _, ns := range []string{"pk", "ipns", cacheNamespace} {
		if nsval[ns] == nil {
			t.Fatalf("the DHT has no validator of namespace %s", ns)
		}
	}
	a, reader := hosts[1], hosts[3]
	ctx := testCtx(t, 30*time.Second)
	start := time.Now()
	if err := a.PutCacheRecord(ctx, "k1", []byte("a's result")); err != nil {
		t.Fatal(err)
	}
	t.Logf("put in %s", time.Since(start))
	start = time.Now()
	got, err := reader.GetCacheRecord(ctx, "k1", a.ID())
	if err != nil || string(got) != "a's result" {
		t.Fatalf("GetCacheRecord = %q, %v", got, err)
	}
	t.Logf("hit in %s", time.Since(start))
	start = time.Now()
	if _, err := reader.GetCacheRecord(ctx, "k2", a.ID()); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("a key never put: %v, want ErrNoRecord", err)
	}
	t.Logf("miss in %s", time.Since(start))
	if _, err := reader.GetCacheRecord(ctx, "k1", hosts[2].ID()); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("a publisher that put nothing: %v, want ErrNoRecord", err)
	}

	// m runs a DHT server of its own that takes and serves anything.
	m := newPublisher(t)
	raw := newRawHost(t, m.key, true)
	evil, err := dht.New(raw, dht.Mode(dht.ModeServer), dht.ProtocolPrefix(DHTPrefix),
		dht.Validator(record.NamespacedValidator{cacheNamespace: acceptAll{}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = evil.Close() })
	for _, h := range hosts {
		if err := raw.Connect(ctx, addrInfo(h)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the hostile server in the routing table", func() bool {
			return h.dht.RoutingTable().Find(raw.ID()) != ""
		})
	}
	key := cacheDHTKey("k3", a.host.ID())
	forged, err := sealCacheRecord(m.key, key, cacheSealKey("k3"), []byte("m's lie"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := evil.PutValue(ctx, key, forged); err != nil {
		t.Fatal(err)
	}
	if held, err := evil.GetValue(ctx, key); err != nil || !bytes.Equal(held, forged) {
		t.Fatalf("the hostile server does not serve its record: %v", err)
	}
	if got, err := reader.GetCacheRecord(ctx, "k3", a.ID()); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("a forged record: %q, %v; want ErrNoRecord", got, err)
	}
}
