package node

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// untar unpacks an input archive into dir: regular files and directories
// only, every path inside dir, at most limit bytes in all.
func untar(archive []byte, dir string, limit int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: input directory: %w", err)
	}
	tr := tar.NewReader(bytes.NewReader(archive))
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadInputs, err)
		}
		target, err := insideDir(dir, h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o700)
		case tar.TypeReg:
			if total += h.Size; total > limit {
				return fmt.Errorf("%w: inputs over %d bytes", ErrBadInputs, limit)
			}
			err = writeFile(target, tr, h.Size)
		default:
			return fmt.Errorf("%w: %s is neither a file nor a directory", ErrBadInputs, h.Name)
		}
		if err != nil {
			return unpackErr(h.Name, err)
		}
	}
}

// unpackErr says why the entry name could not be unpacked, without the
// node's own paths. What the archive causes is ErrBadInputs: an entry cut
// short, a file where an earlier entry made a directory or the reverse, a
// name the filesystem cannot hold. Anything else (a full disk) is the node's.
func unpackErr(name string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err
	}
	for _, bad := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.EISDIR, syscall.ENOTDIR, syscall.ENAMETOOLONG, syscall.EINVAL, fs.ErrExist} {
		if errors.Is(err, bad) {
			return fmt.Errorf("%w: %q: %w", ErrBadInputs, name, err)
		}
	}
	return fmt.Errorf("node: unpacking %q: %w", name, err)
}

func insideDir(dir, name string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(name))
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: path %q leaves the input directory", ErrBadInputs, name)
	}
	return filepath.Join(dir, clean), nil
}

func writeFile(path string, r io.Reader, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
