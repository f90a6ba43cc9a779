package dashboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/opendms/dms/dms/api"
)

// events streams a page's live part (GET /ui/events?page=KEY&id=ID) as
// Server-Sent Events: an event "live" whose data is {"html": ...}, the
// part rendered anew, sent first and then each time it changes. A page
// with a watch (a job, a flow) is rendered on each change it signals; every
// page is also read again every poll. The stream ends when the client
// leaves or the server stops.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	p, ok := d.pages[r.URL.Query().Get("page")]
	if !ok {
		http.Error(w, "no such page", http.StatusNotFound)
		return
	}
	id := r.URL.Query().Get("id")
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel() // ends the watch
	var changed <-chan struct{}
	if p.watch != nil {
		var err error
		if changed, err = p.watch(ctx, id); err != nil {
			d.fail(w, r, err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	tick := time.NewTicker(d.poll)
	defer tick.Stop()
	var last [32]byte
	for {
		if frag, err := d.fragment(ctx, p, id); err == nil {
			if sum := sha256.Sum256(frag); sum != last {
				last = sum
				if writeEvent(w, frag) != nil || rc.Flush() != nil {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-api.Stopping(r.Context()):
			return
		case <-tick.C:
		case _, open := <-changed:
			if !open {
				changed = nil // the watch ended: polling goes on
			}
		}
	}
}

// fragment renders a page's live part.
func (d *Dashboard) fragment(ctx context.Context, p *page, id string) ([]byte, error) {
	data, err := p.load(ctx, id)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = p.tmpl.ExecuteTemplate(&b, "live", view{Live: liveURL(p.key, id), Data: data})
	return b.Bytes(), err
}

// writeEvent writes one "live" event. The HTML travels as a JSON string,
// which holds no line break: an event's data ends at one.
func writeEvent(w http.ResponseWriter, frag []byte) error {
	data, err := json.Marshal(struct {
		HTML string `json:"html"`
	}{string(frag)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: live\ndata: %s\n\n", data)
	return err
}
