package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/opendms/dms/types"
)

// Fetching a task's input files (types.Task.Files).
const (
	// fetchConcurrency is how many input files a task fetches at once.
	fetchConcurrency = 16
	// providersPatience bounds a DHT lookup of a file's providers.
	providersPatience = 10 * time.Second
	// reasonSources is how many failed sources a reason names.
	reasonSources = 4
)

// placeFiles fetches the task's input files and writes each, read-only, at
// dir/Path, where the input archive (if any) was unpacked already. Files
// that are bad (their list fails types.CheckInputFiles), too large (one
// over MaxBlob, or all over MaxInputBytes), or collide with the archive's
// paths are ErrBadInputs: the program's fault. A file no source has is
// ErrInputUnavailable: the node's.
func (x *allocRun) placeFiles(ctx context.Context, dir string, files []types.InputFile) error {
	if err := types.CheckInputFiles(files); err != nil {
		return fmt.Errorf("%w: %w", ErrBadInputs, err)
	}
	var declared int64
	for _, f := range files {
		if f.Size > x.n.cfg.MaxBlob {
			return fmt.Errorf("%w: input file %q is %d bytes, over this node's limit of %d", ErrBadInputs, f.Path, f.Size, x.n.cfg.MaxBlob)
		}
		if declared += f.Size; declared > x.n.cfg.MaxInputBytes {
			return fmt.Errorf("%w: input files of over %d bytes, this node's limit", ErrBadInputs, x.n.cfg.MaxInputBytes)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: input directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("node: input directory: %w", err)
	}
	defer root.Close()
	var total atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	for _, f := range files {
		g.Go(func() error {
			if err := context.Cause(ctx); err != nil {
				return err // another file failed the allocation, or it ended
			}
			data, err := x.fetchFile(ctx, f)
			if err != nil {
				return err
			}
			if total.Add(int64(len(data))) > x.n.cfg.MaxInputBytes {
				return fmt.Errorf("%w: input file %q takes the input files over this node's limit of %d bytes",
					ErrBadInputs, f.Path, x.n.cfg.MaxInputBytes)
			}
			return place(root, f.Path, data)
		})
	}
	return g.Wait()
}

// place writes data at path p under root, creating its directories; p
// was checked (types.CheckInputPath), and root keeps it inside anyway.
func place(root *os.Root, p string, data []byte) error {
	name := filepath.FromSlash(p)
	if d := filepath.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o700); err != nil {
			return placeErr(p, err)
		}
	}
	f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o400)
	if err != nil {
		return placeErr(p, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return placeErr(p, err)
	}
	if err := f.Close(); err != nil {
		return placeErr(p, err)
	}
	return nil
}

// placeErr says why input file p could not be placed. A file or directory
// already at p, or a file where p needs a directory, is ErrBadInputs:
// input files never collide with each other (types.CheckInputFiles), so
// the input archive holds it. Anything else is as unpackErr has it.
func placeErr(p string, err error) error {
	cause := err
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		cause = pe.Err
	}
	for _, clash := range []error{fs.ErrExist, syscall.ENOTDIR, syscall.EISDIR} {
		if errors.Is(cause, clash) {
			return fmt.Errorf("%w: input file %q collides with a path of the input archive: %w", ErrBadInputs, p, cause)
		}
	}
	return unpackErr(p, err)
}

// fetchFile returns an input file's bytes: from the node's store, or else
// from the first source that has it (sources), verified against its CID
// (Network.FetchBlob verifies) and, unless over MaxBlob (ErrBadInputs),
// kept in the store. Sources are asked
// again, with a backoff, for up to fetchPatience, while any failed in a
// way another try may mend (unreachable, cut off): not when each answered
// it lacks the file (ErrBlobNotFound) or sent other bytes.
func (x *allocRun) fetchFile(ctx context.Context, f types.InputFile) ([]byte, error) {
	if x.blobs.Has(f.CID) {
		if data, err := x.blobs.Get(f.CID); err == nil {
			return data, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, fetchPatience)
	defer cancel()
	src := &sources{x: x, file: f}
	for wait := fetchRetryBase; ; wait = min(2*wait, fetchRetryCap) {
		data, again := src.round(ctx)
		if data != nil {
			if int64(len(data)) > x.n.cfg.MaxBlob {
				return nil, fmt.Errorf("%w: input file %q is %d bytes, over this node's limit of %d", ErrBadInputs, f.Path, len(data), x.n.cfg.MaxBlob)
			}
			if _, err := x.blobs.Put(data); err != nil {
				return nil, fmt.Errorf("node: keeping input file %q: %w", f.Path, err)
			}
			return data, nil
		}
		if !again || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, err // the allocation ended, or another file failed it
	}
	return nil, fmt.Errorf("%w: %s for %q: %s", ErrInputUnavailable, f.CID, f.Path, src.why())
}

// sources are the peers an input file may come from, in the order they
// are asked: each peer of its From, the task's requester, then the peers
// the DHT names as its providers (looked up once, when the others failed).
// The node itself is never asked: its store was.
type sources struct {
	x         *allocRun
	file      types.InputFile
	providers []string // nil until looked up
	looked    bool
	failures  []string // the last round's, "peer: error"
}

// round asks each source once and returns the first verified bytes, or
// nil and whether another round may succeed.
func (s *sources) round(ctx context.Context) (data []byte, again bool) {
	s.failures = s.failures[:0]
	asked := map[string]bool{s.x.n.cfg.ID.PeerID: true}
	try := func(peers []string) []byte {
		for _, p := range peers {
			if asked[p] || ctx.Err() != nil {
				continue
			}
			asked[p] = true
			data, err := s.x.n.net.FetchBlob(ctx, p, s.file.CID)
			if err == nil {
				return data
			}
			s.x.n.cfg.Logger.Debug("fetching an input file", "cid", s.file.CID, "path", s.file.Path, "peer", p, "err", err)
			switch {
			case errors.Is(err, ErrBlobNotFound):
				s.failures = append(s.failures, p+": does not hold it")
			case errors.Is(err, types.ErrCIDMismatch):
				s.failures = append(s.failures, p+": sent other bytes")
			default:
				s.failures = append(s.failures, fmt.Sprintf("%s: %v", p, err))
				again = true
			}
		}
		return nil
	}
	if data := try(append(slices.Clip(s.file.From), s.x.rec.Requester)); data != nil {
		return data, false
	}
	if !s.looked && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, providersPatience)
		s.providers, s.looked = s.x.n.net.FindProviders(pctx, s.file.CID), true
		cancel()
	}
	return try(s.providers), again
}

// why says which sources failed and how, for the allocation's reason.
func (s *sources) why() string {
	if len(s.failures) == 0 {
		return "no peer to ask: it names none, and the DHT knows no provider"
	}
	shown := s.failures[:min(len(s.failures), reasonSources)]
	out := fmt.Sprintf("no peer has it (asked %d", len(s.failures))
	if s.looked && len(s.providers) == 0 {
		out += "; the DHT knows no provider"
	}
	out += "): " + strings.Join(shown, "; ")
	if len(s.failures) > len(shown) {
		out += "; ..."
	}
	return out
}
