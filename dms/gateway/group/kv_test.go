package group

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
	"sync"
)

// kv is the tests' FSM: a map of integers, with commands "set k v" and
// "add k n"; a result is the key's new value. A snapshot is the map as JSON.
type kv struct {
	mu sync.Mutex
	m  map[string]int64
}

func newKV() *kv { return &kv{m: map[string]int64{}} }

func (s *kv) Apply(_ uint64, cmd []byte) []byte {
	f := strings.Fields(string(cmd))
	if len(f) != 3 {
		return []byte("bad command")
	}
	n, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return []byte("bad number")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch f[0] {
	case "set":
		s.m[f[1]] = n
	case "add":
		s.m[f[1]] += n
	default:
		return []byte("bad verb")
	}
	return []byte(strconv.FormatInt(s.m[f[1]], 10))
}

func (s *kv) get(k string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return v, ok
}

func (s *kv) copy() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.m)
}

func (s *kv) Snapshot() (Snapshot, error) { return kvSnapshot(s.copy()), nil }

func (s *kv) Restore(r io.Reader) error {
	m := map[string]int64{}
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return fmt.Errorf("kv: restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = m
	return nil
}

type kvSnapshot map[string]int64

func (k kvSnapshot) Persist(w io.Writer) error { return json.NewEncoder(w).Encode(map[string]int64(k)) }
func (k kvSnapshot) Release()                  {}
