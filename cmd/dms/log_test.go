package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// --log-format json writes one JSON object a line, with the level and
// the record's attributes as fields; text writes key=value.
func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	logger, err := newLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("hidden")
	logger.With("component", "node").Info("job finished", "job", "j-1", "state", "completed")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("not one JSON line: %q (%v)", buf.String(), err)
	}
	if rec["level"] != "INFO" || rec["msg"] != "job finished" || rec["component"] != "node" || rec["job"] != "j-1" || rec["time"] == nil {
		t.Fatalf("record %v", rec)
	}
	buf.Reset()
	if logger, err = newLogger(&buf, "warn", "text"); err != nil {
		t.Fatal(err)
	}
	logger.Warn("slow peer", "peer", "12D3KooWX")
	if out := buf.String(); !strings.Contains(out, `level=WARN msg="slow peer" peer=12D3KooWX`) {
		t.Fatalf("text record %q", out)
	}
	if _, err := newLogger(&buf, "info", "JSON"); err == nil || err.Error() != `--log-format "JSON": want text or json` {
		t.Fatalf("a bad format: %v", err)
	}
}
