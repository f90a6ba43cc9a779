package types

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/mr-tron/base58"
)

// Limits of a task's input files (Task.Files). The requester checks them
// when it reads a spec, the node again before it fetches anything.
const (
	// MaxInputFiles bounds the files one task names.
	MaxInputFiles = 10_000
	// MaxInputPath bounds one file's path, in bytes; each of its elements
	// is also at most MaxInputName bytes, as a file system's names are.
	MaxInputPath = 1024
	MaxInputName = 255
	// MaxInputFrom bounds the peers one file names as holding it.
	MaxInputFrom = 8
	// MaxInputFilesSize bounds the files as encoded on the wire (CBOR,
	// codec.go), so that an Invocation
	// stays within MaxTaskEnvelopeSize. A file with one peer takes about
	// 160 bytes and its path: MaxInputFiles files fit with paths of up to
	// 150 bytes (with 28-byte paths they take 1.8 MiB).
	MaxInputFilesSize = 3 << 20
)

// InputFileProblem is one problem with a task's input files: Field names
// what is wrong ("[3].path", "[3].from[0]"), "" for the list as a whole.
type InputFileProblem struct {
	Field   string
	Problem string
}

func (p InputFileProblem) Error() string {
	if p.Field == "" {
		return p.Problem
	}
	return "files" + p.Field + ": " + p.Problem
}

// maxInputProblems bounds the problems InputFileProblems lists one by
// one; the rest are counted in one last problem.
const maxInputProblems = 20

// InputFileProblems checks files as a task's input files and lists what is
// wrong: too many files, or too large encoded; a path that is not clean,
// relative and slash-separated (CheckInputPath); two files on one path, or
// a file on the path of another's directory; a CID that is not in its
// canonical form (the CIDv1 string DMS names blobs by); a negative size;
// more than MaxInputFrom peers, one given twice, or one that is not a DMS
// node's PeerID (CheckPeerID). Nil means files are fit to fetch and place.
func InputFileProblems(files []InputFile) []InputFileProblem {
	var out []InputFileProblem
	add := func(field, format string, args ...any) {
		out = append(out, InputFileProblem{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if len(files) > MaxInputFiles {
		add("", "%d files; the limit is %d", len(files), MaxInputFiles)
		return out // checking each of so many would only add noise
	}
	paths := make(map[string]int, len(files))
	for i, f := range files {
		checkInputFile(i, f, add)
		if prev, dup := paths[f.Path]; dup {
			add(fmt.Sprintf("[%d].path", i), "%s is also the path of file %d", clip(f.Path), prev)
		} else {
			paths[f.Path] = i
		}
	}
	for i, f := range files {
		for dir := path.Dir(f.Path); dir != "." && dir != "/" && dir != f.Path; dir = path.Dir(dir) {
			if j, ok := paths[dir]; ok {
				add(fmt.Sprintf("[%d].path", j), "%s is a file, and also a directory of file %d (%s)", clip(dir), i, clip(f.Path))
				break
			}
		}
	}
	if len(out) == 0 {
		if b, err := encoding.Marshal(files); err != nil || len(b) > MaxInputFilesSize {
			add("", "%d bytes encoded; the limit is %d (shorter paths, or fewer files or peers)", len(b), MaxInputFilesSize)
		}
	}
	if len(out) > maxInputProblems {
		more := len(out) - maxInputProblems
		out = append(out[:maxInputProblems], InputFileProblem{Problem: fmt.Sprintf("and %d more problems", more)})
	}
	return out
}

func checkInputFile(i int, f InputFile, add func(field, format string, args ...any)) {
	at := func(field string) string { return fmt.Sprintf("[%d].%s", i, field) }
	if err := CheckInputPath(f.Path); err != nil {
		add(at("path"), "%v", err)
	}
	if c, err := cid.Decode(f.CID); err != nil {
		add(at("cid"), "%s is not a CID", clip(f.CID))
	} else if c.String() != f.CID {
		add(at("cid"), "write %s as %s, the form blobs are named by", clip(f.CID), c)
	}
	if f.Size < 0 {
		add(at("size"), "must not be negative")
	}
	if len(f.From) > MaxInputFrom {
		add(at("from"), "%d peers; the limit is %d", len(f.From), MaxInputFrom)
		return
	}
	for k, p := range f.From {
		field := fmt.Sprintf("[%d].from[%d]", i, k)
		if err := CheckPeerID(p); err != nil {
			add(field, "%v", err)
		} else if slices.Index(f.From, p) < k {
			add(field, "%s is named twice", p)
		}
	}
}

// CheckInputFiles is InputFileProblems as an error: the first problem
// (with the number of others), or nil.
func CheckInputFiles(files []InputFile) error {
	ps := InputFileProblems(files)
	switch len(ps) {
	case 0:
		return nil
	case 1:
		return ps[0]
	}
	return fmt.Errorf("%w (and %d more problems)", ps[0], len(ps)-1)
}

// CheckInputPath reports whether p may name a file under /inputs: a
// slash-separated relative path in its clean form (path.Clean leaves it
// alone: no "", ".", "a//b", "a/./b", "a/", no ".." element, nothing
// absolute), of UTF-8 text with no control characters and no backslash (a
// separator to some systems), at most MaxInputPath bytes, each element at
// most MaxInputName.
func CheckInputPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case p == ".":
		return fmt.Errorf(`"." is /inputs itself, not a file in it`)
	case len(p) > MaxInputPath:
		return fmt.Errorf("%d bytes; the limit is %d", len(p), MaxInputPath)
	case !utf8.ValidString(p):
		return fmt.Errorf("%s is not UTF-8 text", clip(p))
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }):
		return fmt.Errorf("%s holds a control character or a backslash", clip(p))
	case path.IsAbs(p):
		return fmt.Errorf("%s is absolute; give it relative to /inputs", clip(p))
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("%s has a \"..\" element", clip(p))
	case path.Clean(p) != p:
		return fmt.Errorf("%s is not a clean path (write %s)", clip(p), clip(path.Clean(p)))
	}
	for name := range strings.SplitSeq(p, "/") {
		if len(name) > MaxInputName {
			return fmt.Errorf("%s has a name of %d bytes; the limit is %d", clip(p), len(name), MaxInputName)
		}
	}
	return nil
}

// An Ed25519 PeerID is the identity multihash (code 0, length 36) of the
// key's protobuf encoding: type Ed25519 (field 1 = 1), data (field 2, 32
// bytes).
var ed25519PeerIDPrefix = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// CheckPeerID reports whether id is the PeerID of a DMS node, as libp2p
// writes it: the base58btc multihash of an Ed25519 key ("12D3KooW...").
// Every DMS node's identity is an Ed25519 key, and peers are compared as
// these strings, so another key type or encoding never names one.
func CheckPeerID(id string) error {
	b, err := base58.Decode(id)
	if err != nil || len(b) != len(ed25519PeerIDPrefix)+32 || !strings.HasPrefix(string(b), string(ed25519PeerIDPrefix)) {
		return fmt.Errorf("%s is not the PeerID of a DMS node (12D3KooW..., 52 characters)", clip(id))
	}
	return nil
}

// PeerIDFromPublicKey returns the PeerID of an Ed25519 public key, as
// libp2p writes it.
func PeerIDFromPublicKey(pub []byte) string {
	return base58.Encode(append(slices.Clip(ed25519PeerIDPrefix), pub...))
}

// clip quotes s, cut to 64 bytes, for a message.
func clip(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q...", s[:64])
	}
	return fmt.Sprintf("%q", s)
}

// CloneInputFiles copies files deeply: the copy shares no slice with them.
func CloneInputFiles(files []InputFile) []InputFile {
	if files == nil {
		return nil
	}
	out := slices.Clone(files)
	for i := range out {
		out[i].From = slices.Clone(out[i].From)
	}
	return out
}
