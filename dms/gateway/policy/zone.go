package policy

import (
	"fmt"
	"regexp"
	"sync"
	"time"
	_ "time/tzdata" // zones must not depend on the host's zoneinfo: see doc.go
)

// zoneName is the form of an IANA zone name: parts of letters, digits, '_',
// '-' and '+', each led by a letter, joined by '/'. It admits no "..", no
// leading '/' and no '\', so a name can only ever select an entry of the
// zone database, never another file.
var zoneName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z][A-Za-z0-9_+-]*)*$`)

// maxZoneName is well above the longest IANA name (32 bytes).
const maxZoneName = 64

// zones holds one *time.Location per loaded name, so that two windows
// parsed from the same text compare equal with ==. It only ever gains
// immutable entries for names that loaded; there are a few hundred.
var zones sync.Map

// LoadZone loads an IANA time zone such as "Europe/Berlin" or "UTC" for a
// policy's quota zone. It checks the name's form before looking it up, and
// refuses "Local": the gateway's own zone is never what a user means.
func LoadZone(name string) (*time.Location, error) {
	loc, err := loadZone(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return loc, nil
}

func loadZone(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, fmt.Errorf(`zone "Local" is the gateway's own zone (want an IANA name such as Europe/Berlin, or UTC)`)
	}
	if len(name) > maxZoneName || !zoneName.MatchString(name) {
		return nil, fmt.Errorf("zone %s is not an IANA zone name (want e.g. Europe/Berlin or UTC)", quote(name))
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown zone %s (want an IANA name such as Europe/Berlin, or UTC)", quote(name))
	}
	actual, _ := zones.LoadOrStore(name, loc)
	return actual.(*time.Location), nil
}
