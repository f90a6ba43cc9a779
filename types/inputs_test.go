package types

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multibase"
)

func TestCheckInputPath(t *testing.T) {
	for _, p := range []string{"a", "a/b", "counts/part-0.txt/stdout", "..a", "a..", "a/.b", "é/ü.txt", strings.Repeat("n", MaxInputName),
		strings.Repeat(strings.Repeat("n", 100)+"/", 11)[:MaxInputPath-1] + "x"} {
		if err := CheckInputPath(p); err != nil {
			t.Errorf("%q refused: %v", p, err)
		}
	}
	for p, why := range map[string]string{
		"":                        "empty",
		".":                       "/inputs itself",
		"..":                      `".." element`,
		"../x":                    `".." element`,
		"a/../../b":               `".." element`,
		"a/..":                    `".." element`,
		"a/../b":                  `".." element`,
		"/etc":                    "absolute",
		"/etc/passwd":             "absolute",
		"a//b":                    "not a clean path",
		"./a":                     "not a clean path",
		"a/":                      "not a clean path",
		"a/./b":                   "not a clean path",
		"a\\..\\b":                "backslash",
		"a\x00b":                  "control character",
		"a\nb":                    "control character",
		"a\x7f":                   "control character",
		"\xff":                    "not UTF-8",
		strings.Repeat("n", 256):  "a name of 256 bytes",
		strings.Repeat("a/", 513): "the limit is 1024",
	} {
		err := CheckInputPath(p)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%q: got %v, want an error saying %q", p, err, why)
		}
	}
}

// testPeer returns the PeerID of a fresh Ed25519 key, as libp2p makes it.
func testPeer(t testing.TB) string {
	t.Helper()
	_, pk, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// TestCheckPeerIDAgreesWithLibp2p: every Ed25519 PeerID libp2p makes
// passes and is what PeerIDFromPublicKey makes; the other forms a PeerID
// can take (a CID, an RSA key's sha2-256 multihash), and anything else,
// are refused.
func TestCheckPeerIDAgreesWithLibp2p(t *testing.T) {
	for range 50 {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		lpk, _ := crypto.UnmarshalEd25519PublicKey(pub)
		id, _ := peer.IDFromPublicKey(lpk)
		if err := CheckPeerID(id.String()); err != nil {
			t.Fatalf("libp2p's %s refused: %v", id, err)
		}
		if got := PeerIDFromPublicKey(pub); got != id.String() {
			t.Fatalf("PeerIDFromPublicKey = %s, libp2p says %s", got, id)
		}
		asCID, _ := peer.ToCid(id).StringOfBase(multibase.Base32)
		if CheckPeerID(asCID) == nil {
			t.Fatalf("the CID form %s of a PeerID passed", asCID)
		}
	}
	rsa := "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N" // a sha2-256 PeerID
	if _, err := peer.Decode(rsa); err != nil {
		t.Fatal(err)
	}
	good := testPeer(t)
	for _, bad := range []string{"", rsa, "12D3KooWPeer", good[:len(good)-1], good + "1", "did:key:z6MkvDqGT54cXesYGvABpF1UapVNwjCqRcafi4Px6Thv5T3Z", "0OIl"} {
		if CheckPeerID(bad) == nil {
			t.Errorf("%q passed", bad)
		}
	}
}

func cidOf(s string) string { return CIDOf([]byte(s)).String() }

func TestInputFileProblems(t *testing.T) {
	p1, p2 := testPeer(t), testPeer(t)
	ok := []InputFile{
		{Path: "a/x", CID: cidOf("x"), Size: 1, From: []string{p1, p2}},
		{Path: "a/y", CID: cidOf("y")},
		{Path: "b", CID: cidOf("x")}, // one blob at two paths is fine
	}
	if ps := InputFileProblems(ok); ps != nil {
		t.Fatalf("good files refused: %v", ps)
	}
	if ps := InputFileProblems(nil); ps != nil {
		t.Fatalf("no files refused: %v", ps)
	}
	v0, _ := cid.Decode(cidOf("x"))
	base58, _ := v0.StringOfBase(multibase.Base58BTC)
	for name, tc := range map[string]struct {
		files []InputFile
		field string
		why   string
	}{
		"hostile path":        {[]InputFile{{Path: "../x", CID: cidOf("x")}}, "[0].path", `".." element`},
		"duplicate":           {[]InputFile{{Path: "a", CID: cidOf("x")}, {Path: "a", CID: cidOf("y")}}, "[1].path", "also the path of file 0"},
		"file and directory":  {[]InputFile{{Path: "a", CID: cidOf("x")}, {Path: "a/b/c", CID: cidOf("y")}}, "[0].path", "also a directory of file 1"},
		"not a CID":           {[]InputFile{{Path: "a", CID: "bafkrei"}}, "[0].cid", "not a CID"},
		"CID in another base": {[]InputFile{{Path: "a", CID: base58}}, "[0].cid", "write"},
		"negative size":       {[]InputFile{{Path: "a", CID: cidOf("x"), Size: -1}}, "[0].size", "negative"},
		"bad peer":            {[]InputFile{{Path: "a", CID: cidOf("x"), From: []string{p1, "12D3KooWPeer"}}}, "[0].from[1]", "not the PeerID"},
		"peer twice":          {[]InputFile{{Path: "a", CID: cidOf("x"), From: []string{p1, p2, p1}}}, "[0].from[2]", "named twice"},
		"too many peers":      {[]InputFile{{Path: "a", CID: cidOf("x"), From: make([]string, MaxInputFrom+1)}}, "[0].from", "the limit is 8"},
		"too many files":      {make([]InputFile, MaxInputFiles+1), "", "10001 files; the limit is 10000"},
		"too large as JSON": {func() []InputFile {
			fs := make([]InputFile, 4000)
			long := strings.Repeat("p", 250)
			for i := range fs {
				fs[i] = InputFile{Path: fmt.Sprintf("%04d/%s/%s/%s", i, long, long, long), CID: cidOf("x"), From: []string{p1, p2}}
			}
			return fs
		}(), "", "bytes encoded; the limit is"},
	} {
		ps := InputFileProblems(tc.files)
		if len(ps) == 0 || ps[0].Field != tc.field || !strings.Contains(ps[0].Problem, tc.why) {
			t.Errorf("%s: got %v, want %s saying %q", name, ps, tc.field, tc.why)
		}
		if err := CheckInputFiles(tc.files); err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: CheckInputFiles said %v", name, err)
		}
	}
}

func TestInputFileProblemsAreBounded(t *testing.T) {
	files := make([]InputFile, 500)
	for i := range files {
		files[i] = InputFile{Path: fmt.Sprintf("/%d", i), CID: cidOf("x")}
	}
	ps := InputFileProblems(files)
	if len(ps) != maxInputProblems+1 || ps[maxInputProblems].Problem != "and 480 more problems" {
		t.Fatalf("%d problems, the last %v", len(ps), ps[len(ps)-1])
	}
	if err := CheckInputFiles(files); !strings.Contains(err.Error(), "files[0].path:") || !strings.Contains(err.Error(), "and 20 more problems") {
		t.Fatalf("CheckInputFiles: %v", err)
	}
}

// TestTenThousandFilesFitAnInvocation: a task naming MaxInputFiles files
// as large as MaxInputFilesSize allows, with args and env at their limit
// (jobs.MaxArgsEnv, 64 KiB), seals into an Invocation within
// MaxTaskEnvelopeSize, and opens again; an Accept of 300 KiB does not.
func TestTenThousandFilesFitAnInvocation(t *testing.T) {
	from := testPeer(t)
	files := make([]InputFile, MaxInputFiles)
	for i := range files {
		files[i] = InputFile{Path: fmt.Sprintf("counts/part-%05d.txt/stdout", i), CID: cidOf(fmt.Sprint(i)), Size: 1 << 20, From: []string{from}}
	}
	typical := cborOf(t, files)
	t.Logf("%d files with one peer and 28-byte paths: %d bytes encoded", len(files), len(typical))
	for i := range files { // lengthen the paths to the limit
		files[i].Path = fmt.Sprintf("%05d/%s", i, strings.Repeat("p", 144))
	}
	if err := CheckInputFiles(files); err != nil {
		t.Fatal(err)
	}
	full := cborOf(t, files)
	t.Logf("with %d-byte paths: %d bytes encoded (limit %d)", len(files[0].Path), len(full), MaxInputFilesSize)
	task := Task{Executor: "wasm", Module: cidOf("m"), Args: []string{strings.Repeat("a", 64<<10)}, Files: files}
	env, err := Seal(fuzzKey(), &Invocation{JobID: "j", AllocationID: "a", Epoch: 1, Task: task}, fuzzNow, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := env.Marshal()
	if err != nil {
		t.Fatalf("the invocation does not fit: %v", err)
	}
	t.Logf("the invocation: %d bytes (limit %d)", len(wire), MaxTaskEnvelopeSize)
	back, err := UnmarshalEnvelope(wire)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := back.Open(fuzzNow)
	if err != nil || len(msg.(*Invocation).Task.Files) != MaxInputFiles {
		t.Fatalf("opened %T, %v", msg, err)
	}

	big, err := Seal(fuzzKey(), &Accept{JobID: JobID(strings.Repeat("x", 300<<10))}, fuzzNow, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.Marshal(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a 300 KiB accept marshalled: %v", err)
	}
	raw := cborOf(t, big)
	if _, err := UnmarshalEnvelope(raw); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a 300 KiB accept unmarshalled: %v", err)
	}
}

func TestCloneInputFilesSharesNothing(t *testing.T) {
	files := []InputFile{{Path: "a", CID: "c", From: []string{"p"}}}
	c := CloneInputFiles(files)
	c[0].From[0], c[0].Path = "q", "b"
	if files[0].From[0] != "p" || files[0].Path != "a" {
		t.Fatalf("the clone shares with the original: %+v", files)
	}
	if CloneInputFiles(nil) != nil {
		t.Fatal("a clone of nil is not nil")
	}
}
