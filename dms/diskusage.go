package dms

import (
	"errors"
	"io/fs"
	"path/filepath"
)

// diskUsage returns the disk space of the files and directories under dir,
// as du counts it: the blocks allocated to each where the system says
// (badger's value log is a sparse file, mostly holes), its size elsewhere.
// Files removed while it walks are skipped.
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil {
			var info fs.FileInfo
			if info, err = e.Info(); err == nil {
				total += allocated(info)
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	return total, err
}
