package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const modulePath = "github.com/opendms/dms"

// repoFile returns the path of rel (slash-separated, from the repository
// root), found by walking up from the working directory to the go.mod of
// module github.com/opendms/dms.
func repoFile(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	start := dir
	for {
		if isRepoRoot(dir) {
			p := filepath.Join(dir, filepath.FromSlash(rel))
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("%w: %s is missing: %w", ErrNoRepo, rel, err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%w: no go.mod of %s in %s or above: run dms bench from a clone of the repository, which holds %s", ErrNoRepo, modulePath, start, rel)
		}
		dir = parent
	}
}

// isRepoRoot reports whether dir holds the go.mod of this module.
func isRepoRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if name, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(name), `"`) == modulePath
		}
	}
	return false
}
