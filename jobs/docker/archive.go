package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// archiveRepo is the repository archive images are tagged in, by the
// digest of their config: dms-archive:<hex>.
const archiveRepo = "dms-archive"

// maxManifest bounds an archive's manifest.json and index.json.
const maxManifest = 1 << 20

// savedImage is one image of a `docker save` archive.
type savedImage struct {
	ID   string   // "sha256:" and the digest of its config, verified
	Tags []string // as the manifest names them, familiar ("alpine:3.20")
}

// archive is what an archive holds, read once per CID.
type archive struct {
	lock   chan struct{} // held (full) while the archive is read or loaded
	images []savedImage  // nil until read
}

// archives caches what archives hold, by CID. An entry is small and never
// dropped: a node sees few distinct archives.
type archives struct {
	mu    sync.Mutex
	byCID map[string]*archive
}

func (as *archives) get(cid string) *archive {
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.byCID == nil {
		as.byCID = make(map[string]*archive)
	}
	a := as.byCID[cid]
	if a == nil {
		a = &archive{lock: make(chan struct{}, 1)}
		as.byCID[cid] = a
	}
	return a
}

// image returns the ID of the image a run uses: the one it names, or the
// one from its archive.
func (e *Executor) image(ctx context.Context, in jobs.Input) (string, error) {
	if in.Module == nil && in.Load != nil {
		data, err := in.Load()
		if err != nil {
			return "", err
		}
		in.Module = data
	}
	if len(in.Module) == 0 {
		return e.named(ctx, in.Image)
	}
	cid := in.ModuleID
	if cid == "" {
		cid = types.CIDOf(in.Module).String()
	}
	return e.fromArchive(ctx, cid, in.Module, in.Image)
}

// fromArchive returns the ID of the image ref names in an archive ("" for
// its only one), loading the archive first if the engine lacks the image.
func (e *Executor) fromArchive(ctx context.Context, cid string, data []byte, ref string) (string, error) {
	a := e.archives.get(cid)
	select {
	case a.lock <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-a.lock }()
	img, err := a.pick(data, ref)
	if err != nil {
		return "", fmt.Errorf("%w: image archive %s: %w", jobs.ErrBadModule, cid, err)
	}
	switch has, err := e.has(ctx, img.ID); {
	case err != nil:
		return "", err
	case has:
		return img.ID, nil
	}
	if err := e.load(ctx, data, a.images); err != nil {
		return "", fmt.Errorf("image archive %s: %w", cid, err)
	}
	if has, err := e.has(ctx, img.ID); err != nil || !has {
		return "", errors.Join(fmt.Errorf("%w: image archive %s loaded, but the engine has no image %s", jobs.ErrBadModule, cid, img.ID), err)
	}
	return img.ID, nil
}

// pick reads the archive, the first time, and picks the image ref names.
// The caller holds a.lock.
func (a *archive) pick(data []byte, ref string) (savedImage, error) {
	if a.images == nil {
		images, err := readArchive(data)
		if err != nil {
			return savedImage{}, err
		}
		a.images = images
	}
	return pick(a.images, ref)
}

// named returns the ID of the image ref names on the node.
func (e *Executor) named(ctx context.Context, ref string) (string, error) {
	img, err := e.cli.ImageInspect(ctx, ref)
	switch {
	case cerrdefs.IsNotFound(err):
		return "", fmt.Errorf("%w: %s (images are never pulled: build or load it on the node, or ship it as an image archive)", ErrNoImage, ref)
	case err != nil:
		return "", engineError("inspecting image "+ref, err)
	}
	return img.ID, nil
}

// has reports whether the engine holds the image with this ID.
func (e *Executor) has(ctx context.Context, id string) (bool, error) {
	_, err := e.cli.ImageInspect(ctx, id)
	switch {
	case cerrdefs.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, engineError("inspecting image "+id, err)
	}
	return true, nil
}

// load loads the archive without its tags, and tags its images in
// archiveRepo instead: an archive never replaces an image a job names.
func (e *Executor) load(ctx context.Context, data []byte, images []savedImage) error {
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() { pw.CloseWithError(untagged(data, pw)) })
	defer wg.Wait()
	defer pr.CloseWithError(io.ErrClosedPipe) // the writer stops, if the engine stopped reading
	resp, err := e.cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		return engineError("loading", err)
	}
	defer resp.Body.Close()
	if err := loadResult(resp.Body); err != nil {
		return err
	}
	e.loads.Add(1)
	for _, img := range images {
		if err := e.cli.ImageTag(ctx, img.ID, archiveRepo+":"+strings.TrimPrefix(img.ID, "sha256:")); err != nil {
			return engineError("tagging "+img.ID, err)
		}
	}
	return nil
}

// loadResult reads the engine's answer to a load: a stream of JSON
// messages, any of which may report an error.
func loadResult(body io.Reader) error {
	dec := json.NewDecoder(body)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		err := dec.Decode(&msg)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("docker: reading the engine's answer to a load: %w", err)
		case msg.ErrorDetail != nil && msg.ErrorDetail.Message != "":
			return fmt.Errorf("%w: the engine refused it: %s", jobs.ErrBadModule, msg.ErrorDetail.Message)
		case msg.Error != "":
			return fmt.Errorf("%w: the engine refused it: %s", jobs.ErrBadModule, msg.Error)
		}
	}
}

// manifestEntry is one image in an archive's manifest.json.
type manifestEntry struct {
	Config   string
	RepoTags []string
}

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// readArchive reads which images a `docker save` archive holds, and checks
// that each one's config hashes to the name the manifest gives it (the
// engine checks the layers against the config when it loads them).
func readArchive(data []byte) ([]savedImage, error) {
	files, err := readEntries(data, func(name string) bool { return name == "manifest.json" })
	if err != nil {
		return nil, err
	}
	var entries []manifestEntry
	if m, ok := files["manifest.json"]; !ok {
		return nil, errors.New("no manifest.json: not a docker save archive")
	} else if err := json.Unmarshal(m, &entries); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("manifest.json lists no image")
	}
	configs := map[string]bool{}
	for _, m := range entries {
		configs[path.Clean(m.Config)] = true
	}
	if files, err = readEntries(data, func(name string) bool { return configs[name] }); err != nil {
		return nil, err
	}
	images := make([]savedImage, len(entries))
	for i, m := range entries {
		digest := strings.TrimSuffix(path.Base(m.Config), ".json")
		config, ok := files[path.Clean(m.Config)]
		if !hexDigest.MatchString(digest) || !ok {
			return nil, fmt.Errorf("manifest.json names config %q, not in the archive or not named by its digest", m.Config)
		}
		if sum := sha256.Sum256(config); hex.EncodeToString(sum[:]) != digest {
			return nil, fmt.Errorf("config %s does not hash to its name", m.Config)
		}
		images[i] = savedImage{ID: "sha256:" + digest}
		for _, t := range m.RepoTags {
			images[i].Tags = append(images[i].Tags, familiar(t))
		}
	}
	return images, nil
}

// readEntries returns the contents of the regular files of a tar archive
// whose cleaned names want accepts.
func readEntries(data []byte, want func(string) bool) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar archive: %w", err)
		}
		name := path.Clean(hdr.Name)
		if hdr.Typeflag != tar.TypeReg || !want(name) {
			continue
		}
		if files[name], err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
	}
}

// pick chooses the image ref names among those of an archive; "" names the
// only one.
func pick(images []savedImage, ref string) (savedImage, error) {
	if ref == "" {
		if len(images) != 1 {
			return savedImage{}, fmt.Errorf("it holds %d images: name one with image", len(images))
		}
		return images[0], nil
	}
	want := familiar(ref)
	var tags []string
	for _, img := range images {
		if slices.Contains(img.Tags, want) || img.ID == ref {
			return img, nil
		}
		tags = append(tags, img.Tags...)
	}
	return savedImage{}, fmt.Errorf("it holds no image %s (its tags: %s)", ref, strings.Join(tags, ", "))
}

// familiar writes an image reference as docker save names it: without the
// default registry and library, and with a tag (latest by default).
func familiar(ref string) string {
	for _, p := range []string{"docker.io/", "index.docker.io/"} {
		ref = strings.TrimPrefix(ref, p)
	}
	if rest, ok := strings.CutPrefix(ref, "library/"); ok && !strings.Contains(rest, "/") {
		ref = rest
	}
	if !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") && !strings.Contains(ref, "@") {
		ref += ":latest"
	}
	return ref
}

// untagged copies a `docker save` archive to w without the names of its
// images: manifest.json without RepoTags, index.json without image-name
// annotations, and no legacy repositories file.
func untagged(data []byte, w io.Writer) error {
	tr := tar.NewReader(bytes.NewReader(data))
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		var body io.Reader = tr
		switch path.Clean(hdr.Name) {
		case "repositories":
			continue
		case "manifest.json", "index.json":
			b, err := io.ReadAll(io.LimitReader(tr, maxManifest))
			if err != nil {
				return err
			}
			if b, err = withoutNames(path.Clean(hdr.Name), b); err != nil {
				return err
			}
			hdr.Size, body = int64(len(b)), bytes.NewReader(b)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, body); err != nil {
			return err
		}
	}
}

// withoutNames drops the image names from manifest.json or index.json,
// keeping every other field as it is.
func withoutNames(name string, b []byte) ([]byte, error) {
	if name == "manifest.json" {
		var entries []map[string]json.RawMessage
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, fmt.Errorf("manifest.json: %w", err)
		}
		for _, m := range entries {
			delete(m, "RepoTags")
		}
		return json.Marshal(entries)
	}
	var index map[string]json.RawMessage
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	var manifests []map[string]json.RawMessage
	if err := json.Unmarshal(index["manifests"], &manifests); err != nil {
		return b, nil // no list of manifests: nothing names an image
	}
	for _, m := range manifests {
		var notes map[string]string
		if json.Unmarshal(m["annotations"], &notes) == nil && notes != nil {
			delete(notes, "io.containerd.image.name")
			delete(notes, "org.opencontainers.image.ref.name")
			m["annotations"], _ = json.Marshal(notes)
		}
	}
	index["manifests"], _ = json.Marshal(manifests)
	return json.Marshal(index)
}
