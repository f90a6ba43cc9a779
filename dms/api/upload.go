package api

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Upload makes spec self-contained for svc: a module or image archive
// given as a local path is stored with PutBlob and replaced by its CID, and
// so is an input directory, packed as a tar archive. A spec whose files are
// already CIDs is left as it is.
func Upload(ctx context.Context, svc Service, spec *jobs.Spec) error {
	if path := spec.ModulePath(); path != "" {
		c, err := putFile(ctx, svc, path)
		if err != nil {
			return fmt.Errorf("api: uploading module: %w", err)
		}
		spec.Module = c
	}
	if path := spec.ImageArchivePath(); path != "" {
		c, err := putFile(ctx, svc, path)
		if err != nil {
			return fmt.Errorf("api: uploading image_archive: %w", err)
		}
		spec.ImageArchive = c
	}
	if spec.InputDir != "" && !isCID(spec.InputDir) {
		c, err := putDir(ctx, svc, spec.InputDirPath())
		if err != nil {
			return fmt.Errorf("api: uploading input_dir: %w", err)
		}
		spec.InputDir = c
	}
	return nil
}

// putFile stores the file at path in svc, unless svc holds it already: the
// file is hashed here first, so a module submitted again is not sent again.
func putFile(ctx context.Context, svc Service, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	c, _, err := types.CIDOfReader(f)
	if err != nil {
		return "", err
	}
	if has, err := svc.HasBlob(ctx, c.String()); err == nil && has {
		return c.String(), nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	return svc.PutBlob(ctx, f)
}

// putDir streams a tar archive of dir into svc.
func putDir(ctx context.Context, svc Service, dir string) (string, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", dir)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeTar(pw, root)
		pw.CloseWithError(err)
		done <- err
	}()
	c, err := svc.PutBlob(ctx, pr)
	pr.CloseWithError(errUploadEnded) // unblocks the writer if PutBlob stopped reading
	if tarErr := <-done; tarErr != nil && !errors.Is(tarErr, errUploadEnded) {
		return "", tarErr // the cause, rather than how PutBlob saw it
	}
	return c, err
}

// errUploadEnded is what the archive writer gets when PutBlob stopped reading.
var errUploadEnded = errors.New("api: upload ended")

// epoch is the modification time of every archive entry, so that the same
// directory content always packs to the same archive, and the same CID.
var epoch = time.Unix(0, 0)

// writeTar writes the regular files and directories under root as a tar
// archive with relative, slash-separated names. A symbolic link to a regular
// file inside root is archived as that file; any other link is an error.
func writeTar(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		return addEntry(tw, root, path, filepath.ToSlash(rel), d)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func addEntry(tw *tar.Writer, root, path, name string, d fs.DirEntry) error {
	switch {
	case d.IsDir():
		info, err := d.Info()
		if err != nil {
			return err
		}
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: int64(info.Mode().Perm()), ModTime: epoch})
	case d.Type().IsRegular():
		return addFile(tw, path, name)
	case d.Type()&fs.ModeSymlink != 0:
		target, err := linkInside(root, path)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return addFile(tw, target, name)
	}
	return fmt.Errorf("%s: %s is not supported (only regular files and directories)", name, d.Type())
}

// linkInside resolves a symbolic link to a regular file inside root.
func linkInside(root, path string) (string, error) {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(root, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("symbolic link leads out of the input directory, to %s", target)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("symbolic link to %s, which is not a regular file", target)
	}
	return target, nil
}

// addFile archives the regular file at path under name.
func addFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: fi.Size(), Mode: int64(fi.Mode().Perm()), ModTime: epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
