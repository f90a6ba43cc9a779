package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// EndpointFile is the name, inside a node's home, of the file that tells
// local clients where the running daemon's API listens.
const EndpointFile = "api.json"

// Endpoint is where a daemon's API listens and the token it requires.
type Endpoint struct {
	Addr  string `json:"addr"` // host:port on loopback
	Token string `json:"token"`
}

// NewToken returns a fresh API token: 32 random bytes, hex-encoded.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("api: token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// WriteEndpoint writes e to home/api.json with mode 0600. It writes a
// temporary file and renames it, so a reader never sees a partial file.
func WriteEndpoint(home string, e Endpoint) error {
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return fmt.Errorf("api: encoding endpoint: %w", err)
	}
	f, err := os.CreateTemp(home, ".api-*.json") // created with mode 0600
	if err != nil {
		return fmt.Errorf("api: writing endpoint: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, filepath.Join(home, EndpointFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("api: writing endpoint: %w", err)
	}
	return nil
}

// ReadEndpoint reads home/api.json. When it is absent the error wraps
// ErrNoDaemon and tells how to start a daemon.
func ReadEndpoint(home string) (Endpoint, error) {
	data, err := os.ReadFile(filepath.Join(home, EndpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Endpoint{}, noDaemonError{home: home}
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("api: reading endpoint: %w", err)
	}
	var e Endpoint
	if err := json.Unmarshal(data, &e); err != nil {
		return Endpoint{}, fmt.Errorf("api: %s: %w", filepath.Join(home, EndpointFile), err)
	}
	if e.Addr == "" || e.Token == "" {
		return Endpoint{}, fmt.Errorf("api: %s lacks addr or token", filepath.Join(home, EndpointFile))
	}
	return e, nil
}

// noDaemonError is ErrNoDaemon with the words a user needs to fix it.
type noDaemonError struct{ home string }

func (e noDaemonError) Error() string {
	return fmt.Sprintf("no running daemon for home %s (%s not found): start one with `dms run --home %s`",
		e.home, EndpointFile, e.home)
}

func (noDaemonError) Unwrap() error { return ErrNoDaemon }
