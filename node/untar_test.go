package node

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUntar unpacks arbitrary archives, as a requester may send any bytes
// as a job's inputs. Whatever the archive, untar does not panic, writes
// nothing outside its directory, leaves only regular files and directories,
// stays within its byte limit, and refuses with ErrBadInputs. An archive it
// accepts is unpacked whole: every file holds the bytes of its last entry.
// Seeds are in testdata/fuzz/FuzzUntar.
func FuzzUntar(f *testing.F) {
	f.Fuzz(func(t *testing.T, archive []byte) {
		const limit = 4 << 10
		root := t.TempDir()
		dir := filepath.Join(root, "inputs")
		err := untar(archive, dir, limit)
		total := checkTree(t, root, dir)
		if total > limit {
			t.Fatalf("unpacked %d bytes, limit %d", total, limit)
		}
		if err != nil {
			if !errors.Is(err, ErrBadInputs) {
				t.Fatalf("error %v does not wrap ErrBadInputs", err)
			}
			if strings.Contains(err.Error(), root) {
				t.Fatalf("error %q shows the node's own path", err)
			}
			return
		}
		for name, want := range lastEntries(t, archive) {
			got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: got %q, %v; want %q", name, got, err, want)
			}
		}
	})
}

// checkTree fails if anything under root is outside dir, or is neither a
// regular file nor a directory. It returns the bytes of the regular files.
func checkTree(t *testing.T, root, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root && path != dir && !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			t.Errorf("%s was written outside %s", path, dir)
		}
		switch {
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		case !d.IsDir():
			t.Errorf("%s is a %s", path, d.Type())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// lastEntries reads an archive untar accepted: the content of the last
// regular-file entry of each name, by cleaned slash path.
func lastEntries(t *testing.T, archive []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("untar accepted an archive that does not read: %v", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("untar accepted an archive that does not read: %v", err)
		}
		files[filepath.ToSlash(filepath.Clean(filepath.FromSlash(h.Name)))] = b
	}
}
