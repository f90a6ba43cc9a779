package types

import (
	"errors"
	"testing"
)

func TestCIDOfAndVerify(t *testing.T) {
	data := []byte("hello from dms\n")
	c := CIDOf(data)
	if c.Version() != 1 || c.String()[0] != 'b' {
		t.Fatalf("want a base32 CIDv1, got %s", c)
	}
	if CIDOf(data) != c {
		t.Fatal("CIDOf is not deterministic")
	}
	if err := VerifyCID(c, data); err != nil {
		t.Fatal(err)
	}
	if err := VerifyCID(c, []byte("hello from dmz\n")); !errors.Is(err, ErrCIDMismatch) {
		t.Fatalf("tampered content: %v", err)
	}
}
