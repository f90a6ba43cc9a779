package api

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEndpointRoundTrip(t *testing.T) {
	home := t.TempDir()
	tok, err := NewToken()
	if err != nil || len(tok) != 64 {
		t.Fatalf("NewToken = %q, %v", tok, err)
	}
	want := Endpoint{Addr: "127.0.0.1:4321", Token: tok}
	if err := WriteEndpoint(home, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(home, EndpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("api.json mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := ReadEndpoint(home)
	if err != nil || got != want {
		t.Fatalf("ReadEndpoint = %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(home)
	if len(entries) != 1 {
		t.Fatalf("home holds %d files, want only api.json", len(entries))
	}
}

func TestReadEndpointWithoutDaemon(t *testing.T) {
	home := t.TempDir()
	_, err := ReadEndpoint(home)
	if !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("err = %v, want ErrNoDaemon", err)
	}
	want := "no running daemon for home " + home + " (api.json not found): start one with `dms run --home " + home + "`"
	if err.Error() != want {
		t.Fatalf("message:\n got %s\nwant %s", err, want)
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.1.2.3:0", ":0", "[::]:0", "example.com:0", "192.168.1.1:8080", "127.0.0.1"} {
		if s, err := Serve(addr, http.NotFoundHandler()); err == nil {
			s.Close(context.Background())
			t.Errorf("Serve(%q) accepted", addr)
		}
	}
	for _, addr := range []string{"0.0.0.0:0", "10.1.2.3:0", ":0"} {
		if _, err := Serve(addr, http.NotFoundHandler()); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("Serve(%q) err = %v, want ErrNotLoopback", addr, err)
		}
	}
}

func TestServeLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "127.0.0.2:0", "localhost:0"} {
		s, err := Serve(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
		if err != nil {
			if strings.Contains(err.Error(), "assign requested address") {
				continue // 127.0.0.2 is not configured on every system
			}
			t.Fatalf("Serve(%q): %v", addr, err)
		}
		resp, err := http.Get("http://" + s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if err := s.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}
