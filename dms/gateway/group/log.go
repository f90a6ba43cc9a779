package group

import (
	"bytes"
	"context"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// raftLogger gives raft an hclog logger that writes its warnings and
// errors to l (at Warn and Error), and nothing if l is nil.
func raftLogger(l *slog.Logger, group string) hclog.Logger {
	if l == nil {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:            "raft",
		Level:           hclog.Warn,
		Output:          slogWriter{l: l.With("group", group)},
		DisableTime:     true,
		IncludeLocation: false,
	})
}

// slogWriter takes hclog's lines ("[WARN]  raft: message: k=v") and logs
// each at its level.
type slogWriter struct{ l *slog.Logger }

var _ io.Writer = slogWriter{}

func (w slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		level := slog.LevelWarn
		if bytes.HasPrefix(line, []byte("[ERROR]")) {
			level = slog.LevelError
		}
		_, msg, _ := bytes.Cut(line, []byte("] "))
		w.l.Log(context.Background(), level, string(bytes.TrimSpace(msg)), "component", "raft")
	}
	return len(p), nil
}
