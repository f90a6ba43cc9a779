package dms

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opendms/dms/dms/internal/store"
)

// compiledDir is where the Wasm executor keeps compiled modules (wazero's
// compilation cache): a module compiled once is not compiled again after a
// restart.
const compiledDir = "cache/wasm"

// staleTemp is how old a temporary file of the compilation cache must be
// to be taken for one a crash left behind: wazero writes an entry to a
// temporary file and renames it into place.
const staleTemp = time.Hour

// compiledBudget is the share of the store's budget the compiled modules
// may take; the blobs take what they and the records leave.
func compiledBudget(budget int64) int64 { return budget / 20 }

// pruneCompiled removes the compiled modules written longest ago until
// the rest fit budget, and temporary files a crash left behind. Removing
// one is always safe: wazero then compiles the module again, and a file
// being read stays readable until closed. It returns the bytes freed.
func pruneCompiled(dir string, budget int64, now time.Time) (int64, error) {
	var entries []store.BlobUse
	var freed int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil // gone meanwhile
		}
		if strings.HasSuffix(path, ".tmp") {
			if now.Sub(info.ModTime()) > staleTemp && os.Remove(path) == nil {
				freed += info.Size()
			}
			return nil
		}
		entries = append(entries, store.BlobUse{CID: path, Size: info.Size(), Used: info.ModTime()})
		return nil
	})
	if err != nil {
		return freed, err
	}
	slices.SortFunc(entries, func(a, b store.BlobUse) int { return cmp.Or(a.Used.Compare(b.Used), cmp.Compare(a.CID, b.CID)) })
	for i := range entries {
		entries[i].Seq = uint64(i + 1)
	}
	plan := store.PlanCollection(entries, store.Policy{Budget: budget}, func(string) bool { return false }, now)
	for _, e := range plan.Remove {
		if err := os.Remove(e.CID); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return freed, err
		}
		freed += e.Size
	}
	return freed, nil
}
