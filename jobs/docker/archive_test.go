package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func TestArchive(t *testing.T) {
	e := newExecutor(t, Config{})
	cli := e.cli
	ctx := context.Background()
	// An image of its own, saved, then gone from the engine.
	tag := "dms-docker-test:" + shared.run + "-archive"
	if err := buildImage(ctx, cli, tag, "FROM "+shared.images.guest+"\nLABEL dms.test="+shared.run+"\n", nil); err != nil {
		t.Fatal(err)
	}
	rc, err := cli.ImageSave(ctx, []string{tag})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	removeImage(cli, tag)
	t.Cleanup(func() { removeImage(cli, img.ID) })

	in := guest("exit", "0")
	in.Image, in.Module, in.ModuleID = "", data, types.CIDOf(data).String()
	// Two runs at once load it once.
	began := time.Now()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if out, err := e.Run(ctx, in); err != nil || string(out.Stdout) != "exiting with 0\n" {
				t.Errorf("run from the archive: %v, %+v", err, out)
			}
		})
	}
	wg.Wait()
	t.Logf("two runs from a %s archive, loading it: %s", types.Bytes(len(data)), time.Since(began).Round(time.Millisecond))
	in.Image = tag // named, as it is tagged in the archive
	began = time.Now()
	mustRun(t, e, in)
	t.Logf("a run from the loaded archive: %s", time.Since(began).Round(time.Millisecond))
	if n := e.Stats().ArchiveLoads; n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
	if _, err := cli.ImageInspect(ctx, tag); !cerrdefs.IsNotFound(err) {
		t.Errorf("the archive's tag was applied on the node: %v", err)
	}
	if got, err := cli.ImageInspect(ctx, archiveRepo+":"+strings.TrimPrefix(img.ID, "sha256:")); err != nil || got.ID != img.ID {
		t.Errorf("not tagged in %s: %v", archiveRepo, err)
	}
	in.Image = "other:1"
	if _, err := runIn(t, e, in); !errors.Is(err, jobs.ErrBadModule) || !strings.Contains(err.Error(), "holds no image other:1 (its tags: "+tag) {
		t.Fatalf("a name the archive lacks: %v", err)
	}
	// Gone from the engine (pruned, say): loaded again, read by Load as
	// a node reads a task's archive (Module nil, no image named).
	removeImage(cli, img.ID)
	in.Image, in.Module = "", nil
	in.Load = func() ([]byte, error) { return data, nil }
	mustRun(t, e, in)
	if n := e.Stats().ArchiveLoads; n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}
}

// A bad archive is refused before the engine is asked anything.
func TestBadArchive(t *testing.T) {
	e, err := New(Config{Host: "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	config := []byte(`{"architecture":"amd64"}`)
	digest := sha256Hex(config)
	for name, data := range map[string][]byte{
		"not a tar":   []byte("not a tar archive"),
		"no manifest": tarOf(t, map[string][]byte{"x": []byte("x")}),
		"tampered":    tarOf(t, map[string][]byte{"manifest.json": manifest(t, digest+".json", "a:1"), digest + ".json": []byte(`{"architecture":"arm64"}`)}),
		"no config":   tarOf(t, map[string][]byte{"manifest.json": manifest(t, digest+".json", "a:1")}),
		"bad name":    tarOf(t, map[string][]byte{"manifest.json": manifest(t, "config.json", "a:1"), "config.json": config}),
	} {
		in := guest("exit", "0")
		in.Image, in.Module = "", data
		if _, err := runIn(t, e, in); !errors.Is(err, jobs.ErrBadModule) || errors.Is(err, ErrEngine) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestReadArchive(t *testing.T) {
	c1, c2 := []byte(`{"a":1}`), []byte(`{"b":2}`)
	d1, d2 := sha256Hex(c1), sha256Hex(c2)
	var m []map[string]any
	json.Unmarshal(manifest(t, d1+".json", "docker.io/library/alpine:3", "team/app"), &m)
	m = append(m, map[string]any{"Config": "blobs/sha256/" + d2})
	b, _ := json.Marshal(m)
	data := tarOf(t, map[string][]byte{"manifest.json": b, d1 + ".json": c1, "blobs/sha256/" + d2: c2, "repositories": []byte("{}")})
	images, err := readArchive(data)
	want := []savedImage{{ID: "sha256:" + d1, Tags: []string{"alpine:3", "team/app:latest"}}, {ID: "sha256:" + d2}}
	if err != nil || !reflect.DeepEqual(images, want) {
		t.Fatalf("readArchive = %+v, %v", images, err)
	}
	for ref, id := range map[string]string{"alpine:3": d1, "library/alpine:3": d1, "team/app": d1, "sha256:" + d2: d2} {
		if img, err := pick(images, ref); err != nil || img.ID != "sha256:"+id {
			t.Errorf("pick(%s) = %v, %v", ref, img.ID, err)
		}
	}
	if _, err := pick(images, ""); err == nil || !strings.Contains(err.Error(), "holds 2 images") {
		t.Errorf("pick of nothing among 2: %v", err)
	}

	// Loaded without names: no RepoTags, no repositories file.
	var out bytes.Buffer
	if err := untagged(data, &out); err != nil {
		t.Fatal(err)
	}
	files := untar(t, out.Bytes())
	if _, ok := files["repositories"]; ok || strings.Contains(string(files["manifest.json"]), "RepoTags") || string(files[d1+".json"]) != string(c1) {
		t.Fatalf("untagged archive: %q", files)
	}
}

func TestWithoutNamesIndex(t *testing.T) {
	index := `{"schemaVersion":2,"manifests":[{"digest":"sha256:1","annotations":{"io.containerd.image.name":"docker.io/library/alpine:3","org.opencontainers.image.ref.name":"3","x":"y"}}]}`
	b, err := withoutNames("index.json", []byte(index))
	if err != nil || strings.Contains(string(b), "alpine") || strings.Contains(string(b), "ref.name") || !strings.Contains(string(b), `"x":"y"`) {
		t.Fatalf("%s, %v", b, err)
	}
}

func TestFamiliar(t *testing.T) {
	for ref, want := range map[string]string{
		"alpine": "alpine:latest", "alpine:3": "alpine:3", "docker.io/library/alpine": "alpine:latest",
		"docker.io/team/app:1": "team/app:1", "localhost:5000/app": "localhost:5000/app:latest",
		"app@sha256:00": "app@sha256:00", "library/alpine:3": "alpine:3", "library/a/b": "library/a/b:latest",
	} {
		if got := familiar(ref); got != want {
			t.Errorf("familiar(%s) = %s, want %s", ref, got, want)
		}
	}
}

// extract never writes outside its directory, and copies only regular
// files and directories, within its bounds.
func TestExtract(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(filepath.Dir(dir), filepath.Base(dir)+"-escape")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []tar.Header{
		{Name: "outputs/", Typeflag: tar.TypeDir},
		{Name: "outputs/ok.txt", Typeflag: tar.TypeReg, Size: 2},
		{Name: "outputs/../" + filepath.Base(outside), Typeflag: tar.TypeReg, Size: 2},
		{Name: "/outputs/abs.txt", Typeflag: tar.TypeReg, Size: 2},
		{Name: "outputs/link", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
		{Name: "outputs/link/passwd", Typeflag: tar.TypeReg, Size: 2},
		{Name: "outputs/hard", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"},
		{Name: "other/x.txt", Typeflag: tar.TypeReg, Size: 2},
	}
	for _, h := range entries {
		tw.WriteHeader(&h)
		if h.Size > 0 {
			tw.Write([]byte("hi"))
		}
	}
	tw.Close()
	if err := extract(tar.NewReader(bytes.NewReader(buf.Bytes())), dir, "outputs", 10, 100); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		got = append(got, rel)
		return nil
	})
	// link/passwd lands in a directory named link, not through a link.
	if want := ". link link/passwd ok.txt"; strings.Join(got, " ") != want {
		t.Fatalf("extracted %q, want %q", got, want)
	}
	if _, err := os.Stat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("wrote outside: %v", err)
	}
	err := extract(tar.NewReader(bytes.NewReader(buf.Bytes())), t.TempDir(), "outputs", 10, 3)
	if !errors.Is(err, ErrOutputsTooLarge) {
		t.Fatalf("over the byte bound: %v", err)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func manifest(t *testing.T, config string, tags ...string) []byte {
	b, err := json.Marshal([]map[string]any{{"Config": config, "RepoTags": tags, "Layers": []string{}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tarOf(t *testing.T, files map[string][]byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	return buf.Bytes()
}

func untar(t *testing.T, data []byte) map[string][]byte {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name], _ = io.ReadAll(tr)
	}
}
