package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
)

// copyIn gives the holder's volumes their contents: the input directory in
// /inputs, and /outputs writable by any user (the image's may not be root).
func (r *run) copyIn(ctx context.Context) error {
	pr, pw := io.Pipe()
	var werr error
	var wg sync.WaitGroup
	wg.Go(func() {
		werr = writeVolumes(pw, r.in.InputDir, r.in.OutputDir != "")
		pw.CloseWithError(werr)
	})
	err := r.e.cli.CopyToContainer(ctx, r.holder, "/", pr, container.CopyToContainerOptions{})
	pr.CloseWithError(io.ErrClosedPipe) // the writer stops, if the engine stopped reading
	wg.Wait()
	switch {
	case werr != nil && !errors.Is(werr, io.ErrClosedPipe):
		return fmt.Errorf("%w: input directory: %w", ErrBadInput, werr)
	case err != nil:
		return engineError("copying the inputs", err)
	}
	return nil
}

// writeVolumes writes the tar archive copyIn extracts at the container's root.
func writeVolumes(w io.Writer, inputDir string, outputs bool) error {
	tw := tar.NewWriter(w)
	if outputs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "outputs/", Mode: 0o1777}); err != nil {
			return err
		}
	}
	if inputDir != "" {
		if err := writeDir(tw, inputDir, "inputs"); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeDir writes the directories and regular files under dir, as prefix/...
// Other files (symbolic links, devices) are left out. It reads through an
// os.Root, so nothing outside dir is read, whatever dir holds.
func writeDir(tw *tar.Writer, dir, prefix string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	fsys := root.FS()
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: path.Join(prefix, p), ModTime: info.ModTime(), Mode: 0o755}
		if d.IsDir() {
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
			return tw.WriteHeader(hdr)
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		hdr.Mode = int64(info.Mode().Perm()&0o755 | 0o644) // readable by any user, writable by none but root
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, info.Size())
		return err
	})
}

// copyOut copies /outputs into the output directory.
func (r *run) copyOut(ctx context.Context) error {
	rc, _, err := r.e.cli.CopyFromContainer(ctx, r.id, "/outputs")
	if err != nil {
		return engineError("copying /outputs", err)
	}
	defer rc.Close()
	return extract(tar.NewReader(rc), r.in.OutputDir, "outputs", r.e.cfg.MaxOutputFiles, int64(r.e.cfg.MaxOutputBytes))
}

// extract writes the directories and regular files under prefix/ in tr into
// dir, at most maxFiles files of maxBytes together. Other entries (links,
// devices) are left out. It writes through an os.Root, so no name, however
// crafted, and no symbolic link reaches outside dir.
func extract(tr *tar.Reader, dir, prefix string, maxFiles int, maxBytes int64) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("%w: output directory: %w", ErrBadInput, err)
	}
	defer root.Close()
	files, total := 0, int64(0)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("docker: reading /%s: %w", prefix, err)
		}
		name, ok := strings.CutPrefix(path.Clean(hdr.Name), prefix+"/")
		if !ok || !filepath.IsLocal(name) {
			continue // prefix itself, or a name that would leave it
		}
		name = filepath.FromSlash(name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(name, 0o755)
		case tar.TypeReg:
			if files++; files > maxFiles || total+hdr.Size > maxBytes {
				return fmt.Errorf("%w: /%s holds over %d files or %d bytes", ErrOutputsTooLarge, prefix, maxFiles, maxBytes)
			}
			total += hdr.Size
			err = writeFile(root, name, tr, hdr.Size)
		}
		if err != nil {
			return fmt.Errorf("docker: writing %s: %w", name, err)
		}
	}
}

func writeFile(root *os.Root, name string, r io.Reader, size int64) error {
	if dir := filepath.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.CopyN(f, r, size)
	return errors.Join(err, f.Close())
}
