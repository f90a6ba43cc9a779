package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/opendms/dms/dms/internal/testclock"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// use is a blob of size bytes last used at t0+at, as the seq-th use.
func use(c string, size int64, at time.Duration, seq uint64) BlobUse {
	return BlobUse{CID: c, Size: size, Used: t0.Add(at), Seq: seq}
}

func cids(us []BlobUse) []string {
	out := []string{}
	for _, u := range us {
		out = append(out, u.CID)
	}
	return out
}

func TestPlanCollection(t *testing.T) {
	now := t0.Add(time.Hour)
	// a is the least recently used, e the most; e was used 30 s ago.
	blobs := []BlobUse{
		use("c", 30, 20*time.Minute, 3), use("a", 10, 0, 1), use("e", 50, 59*time.Minute+30*time.Second, 5),
		use("b", 20, 10*time.Minute, 2), use("d", 40, 30*time.Minute, 4),
	}
	none := func(string) bool { return false }
	only := func(keep ...string) func(string) bool {
		return func(c string) bool { return slices.Contains(keep, c) }
	}
	for _, tc := range []struct {
		name   string
		p      Policy
		keep   func(string) bool
		remove []string
		after  int64
		refd   int
		recent int
		retry  time.Time
	}{
		{"under budget", Policy{Budget: 150}, none, nil, 150, 0, 0, time.Time{}},
		{"least recently used first, until it fits", Policy{Budget: 120}, none, []string{"a", "b"}, 120, 0, 0, time.Time{}},
		{"stops as soon as it fits", Policy{Budget: 141}, none, []string{"a"}, 140, 0, 0, time.Time{}},
		{"referenced blobs are kept", Policy{Budget: 100}, only("a", "c"), []string{"b", "d"}, 90, 2, 0, time.Time{}},
		{"everything referenced: over budget, nothing to wait for", Policy{Budget: 10}, only("a", "b", "c", "d", "e"), nil, 150, 5, 0, time.Time{}},
		{"a blob used within the minimum age is kept", Policy{Budget: 0, MinAge: time.Minute}, none, []string{"a", "b", "c", "d"}, 50, 0, 1, t0.Add(60*time.Minute + 30*time.Second)},
		{"minimum age and references", Policy{Budget: 0, MinAge: 35 * time.Minute}, only("a"), []string{"b", "c"}, 100, 1, 2, t0.Add(65 * time.Minute)},
		{"over the budget, down to the target", Policy{Budget: 149, Target: 100}, none, []string{"a", "b", "c"}, 90, 0, 0, time.Time{}},
		{"under the budget, nothing though over the target", Policy{Budget: 150, Target: 100}, none, nil, 150, 0, 0, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanCollection(blobs, tc.p, tc.keep, now)
			if got := cids(plan.Remove); !slices.Equal(got, append([]string{}, tc.remove...)) {
				t.Errorf("removes %v, want %v", got, tc.remove)
			}
			if plan.Before != 150 || plan.After != tc.after || plan.Freed != 150-tc.after {
				t.Errorf("before %d, after %d, freed %d; want 150, %d, %d", plan.Before, plan.After, plan.Freed, tc.after, 150-tc.after)
			}
			if plan.Referenced != tc.refd || plan.Recent != tc.recent || !plan.RetryAt.Equal(tc.retry) {
				t.Errorf("referenced %d, recent %d, retry at %v; want %d, %d, %v", plan.Referenced, plan.Recent, plan.RetryAt, tc.refd, tc.recent, tc.retry)
			}
		})
	}
}

// TestPlanCollectionProperties checks plans over random stores: they
// remove only blobs that are neither kept nor recent, the least recently
// used of those first, no more than needed, and all of them when the rest
// cannot fit.
func TestPlanCollectionProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 30).Draw(t, "n")
		var blobs []BlobUse
		kept := map[string]bool{}
		for i, seq := range rapid.Permutation(seqs(n)).Draw(t, "order") {
			c := fmt.Sprint("blob", i)
			blobs = append(blobs, use(c, rapid.Int64Range(0, 100).Draw(t, "size"), time.Duration(seq)*time.Minute, seq))
			kept[c] = rapid.Bool().Draw(t, "kept")
		}
		budget := rapid.Int64Range(0, 1500).Draw(t, "budget")
		p := Policy{Budget: budget, Target: rapid.Int64Range(0, budget).Draw(t, "target"), MinAge: time.Duration(rapid.IntRange(0, 40).Draw(t, "minAge")) * time.Minute}
		goal := p.goal()
		now := t0.Add(time.Duration(n) * time.Minute)
		plan := PlanCollection(blobs, p, func(c string) bool { return kept[c] }, now)

		// The blobs it may remove, least recently used first.
		var free []BlobUse
		for _, b := range slices.SortedFunc(slices.Values(blobs), func(a, b BlobUse) int { return int(a.Seq) - int(b.Seq) }) {
			if !kept[b.CID] && now.Sub(b.Used) >= p.MinAge {
				free = append(free, b)
			}
		}
		k := len(plan.Remove)
		if k > len(free) || !slices.Equal(plan.Remove, free[:k]) {
			t.Fatalf("removes %v, not a prefix of the removable blobs %v", cids(plan.Remove), cids(free))
		}
		var freed int64
		for _, b := range plan.Remove {
			freed += b.Size
		}
		if plan.Freed != freed || plan.After != plan.Before-freed {
			t.Fatalf("freed %d (sum %d), before %d, after %d", plan.Freed, freed, plan.Before, plan.After)
		}
		if plan.Before <= p.Budget && k > 0 {
			t.Fatalf("removed %d blobs under the budget (%d of %d)", k, plan.Before, p.Budget)
		}
		if plan.Before > p.Budget && plan.After > goal && k < len(free) {
			t.Fatalf("left %d bytes over a target of %d with removable blobs left", plan.After, goal)
		}
		if k > 0 && plan.After+plan.Remove[k-1].Size <= goal {
			t.Fatalf("removed %s, but the rest fit without it", plan.Remove[k-1].CID)
		}
	})
}

func seqs(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// diskFS is a memFS on a disk of cap bytes: a blob that does not fit is
// refused with ENOSPC, as a full file system does.
type diskFS struct {
	*memFS
	cap int64

	mu   sync.Mutex
	used int64
}

func (d *diskFS) stage(data []byte) (staged, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.used+int64(len(data)) > d.cap {
		return nil, &fs.PathError{Op: "write", Path: "blobs/tmp/blob-1", Err: syscall.ENOSPC}
	}
	d.used += int64(len(data))
	return d.memFS.stage(data)
}

func (d *diskFS) remove(c string) error {
	if data, err := d.read(c); err == nil {
		d.mu.Lock()
		d.used -= int64(len(data))
		d.mu.Unlock()
	}
	return d.memFS.remove(c)
}

func testBlobs(t *testing.T, f blobFS, clk *testclock.Clock) *Blobs {
	t.Helper()
	s, err := newBlobStore(f, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &Blobs{s: s, maxSize: 1 << 20}
}

func blob(i, size int) []byte {
	b := make([]byte, size)
	copy(b, fmt.Sprint("blob ", i))
	return b
}

// TestCollect runs collections on a store: least recently used first, a
// read counts as a use, references and recent blobs stay.
func TestCollect(t *testing.T) {
	clk := testclock.New(t0)
	bs := testBlobs(t, newMemFS(), clk)
	var c []string
	for i := range 5 {
		id, err := bs.Put(blob(i, 100))
		if err != nil {
			t.Fatal(err)
		}
		c = append(c, id)
		clk.Add(time.Minute)
	}
	if _, err := bs.Get(c[0]); err != nil { // c[0] is now the most recently used
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	referenced := func(id string) bool { return id == c[1] }
	plan, removed, err := bs.Collect(Policy{Budget: 250, MinAge: 150 * time.Second}, referenced)
	if err != nil {
		t.Fatal(err)
	}
	// c[1] is referenced, c[2] and c[3] go; c[4] and c[0] were used within 150 s.
	if got := cids(plan.Remove); !slices.Equal(got, []string{c[2], c[3]}) || removed != (Removed{2, 200}) {
		t.Fatalf("removed %v (%+v), want c2, c3", got, removed)
	}
	if plan.After != 300 || plan.Recent != 2 || !plan.RetryAt.Equal(t0.Add(4*time.Minute+150*time.Second)) {
		t.Fatalf("plan %+v: want 300 bytes left, 2 recent, retry when c4 is 150 s old", plan)
	}
	for i, want := range []bool{true, true, false, false, true} {
		if bs.Has(c[i]) != want {
			t.Errorf("Has(c%d) = %v, want %v", i, !want, want)
		}
	}
	if n, size := bs.Stats(); n != 3 || size != 300 {
		t.Fatalf("%d blobs, %d bytes left; want 3, 300", n, size)
	}
}

// TestRemoveSkipsBlobsUsedSincePlanned: a blob used between the plan and
// the removal (a job named it, a peer fetched it) stays.
func TestRemoveSkipsBlobsUsedSincePlanned(t *testing.T) {
	clk := testclock.New(t0)
	bs := testBlobs(t, newMemFS(), clk)
	a, _ := bs.Put(blob(1, 10))
	b, _ := bs.Put(blob(2, 10))
	plan := PlanCollection(bs.Uses(), Policy{}, func(string) bool { return false }, clk.Now())
	if !bs.Has(a) {
		t.Fatal("a is gone")
	}
	removed, err := bs.Remove(plan.Remove)
	if err != nil || removed != (Removed{1, 10}) || !bs.Has(a) || bs.Has(b) {
		t.Fatalf("removed %+v (%v); a held %v, b held %v: want b removed only", removed, err, bs.Has(a), bs.Has(b))
	}
}

// TestFullDisk: a blob that does not fit is a clear error (ErrNoSpace),
// wakes the collector, and costs no stored blob; a collection then frees
// only what nothing references, and the blob fits.
func TestFullDisk(t *testing.T) {
	clk := testclock.New(t0)
	bs := testBlobs(t, &diskFS{memFS: newMemFS(), cap: 300}, clk)
	over := bs.Watch(1000) // the disk fills before the budget does
	var c []string
	for i := range 3 {
		id, err := bs.Put(blob(i, 100))
		if err != nil {
			t.Fatal(err)
		}
		c = append(c, id)
	}
	clk.Add(time.Hour)
	_, err := bs.Put(blob(3, 100))
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk: %v, want ErrNoSpace", err)
	}
	t.Logf("the error reads: %v", err)
	select {
	case <-over:
	default:
		t.Fatal("a full disk did not wake the collector")
	}
	if n, size := bs.Stats(); n != 3 || size != 300 {
		t.Fatalf("after the failed Put: %d blobs, %d bytes; want 3, 300", n, size)
	}
	referenced := func(id string) bool { return id != c[1] }
	if _, removed, err := bs.Collect(Policy{Budget: 200}, referenced); err != nil || removed != (Removed{1, 100}) {
		t.Fatalf("collection: %+v, %v", removed, err)
	}
	if _, err := bs.Put(blob(3, 100)); err != nil {
		t.Fatalf("Put after the collection: %v", err)
	}
	for _, i := range []int{0, 2} {
		if _, err := bs.Get(c[i]); err != nil {
			t.Fatalf("referenced blob %d: %v", i, err)
		}
	}
}

// TestWatch: a Put that leaves the blobs over budget signals once; the
// signal waits for a collector that was busy.
func TestWatch(t *testing.T) {
	clk := testclock.New(t0)
	bs := testBlobs(t, newMemFS(), clk)
	over := bs.Watch(150)
	bs.Put(blob(1, 100))
	select {
	case <-over:
		t.Fatal("signalled under budget")
	default:
	}
	bs.Put(blob(2, 100))
	bs.Put(blob(3, 100))
	select {
	case <-over:
	default:
		t.Fatal("no signal over budget")
	}
	select {
	case <-over:
		t.Fatal("two signals queued")
	default:
	}
}

// TestCollectRemovesFiles: on disk, a collected blob's file is gone, and a
// reopened store does not find it.
func TestCollectRemovesFiles(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	bs := db.Blobs(1 << 20)
	keep, err := bs.Put(blob(1, 1000))
	if err != nil {
		t.Fatal(err)
	}
	gone, err := bs.Put(blob(2, 1000))
	if err != nil {
		t.Fatal(err)
	}
	if _, removed, err := bs.Collect(Policy{}, func(c string) bool { return c == keep }); err != nil || removed != (Removed{1, 1000}) {
		t.Fatalf("collection: %+v, %v", removed, err)
	}
	if _, err := os.Stat(dirFS{dir: filepath.Join(dir, "blobs")}.path(gone)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the collected blob's file: %v", err)
	}
	if _, err := bs.Get(gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a collected blob: %v, want ErrNotFound", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, dir)
	defer db.Close()
	if n, size := db.Blobs(1 << 20).Stats(); n != 1 || size != 1000 {
		t.Fatalf("reopened: %d blobs, %d bytes; want 1, 1000", n, size)
	}
}
