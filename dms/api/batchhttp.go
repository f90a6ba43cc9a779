package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"github.com/opendms/dms/jobs"
)

// Pages of GET /v1/batches/{id}/units: DefaultUnitsPage units when the
// request gives no limit, MaxUnitsPage at most.
const (
	DefaultUnitsPage = 100
	MaxUnitsPage     = 1000
)

// requireBatchCIDs refuses a batch that names local files: the API takes
// only what the daemon can find by CID.
func requireBatchCIDs(b *jobs.Batch) error {
	var problems []jobs.FieldError
	if err := requireCIDs(&b.Template); err != nil {
		for _, p := range err.(*jobs.SpecError).Problems {
			problems = append(problems, jobs.FieldError{Field: "template." + p.Field, Problem: p.Problem})
		}
	}
	if b.Units.Dir != "" {
		problems = append(problems, jobs.FieldError{Field: "units.dir",
			Problem: fmt.Sprintf("directory %q is local: upload its files with POST /v1/blobs and give units: {files: {NAME: CID}}", b.Units.Dir)})
	}
	if len(problems) > 0 {
		return &jobs.SpecError{Problems: problems, Doc: "batch spec"}
	}
	return nil
}

// batchUnits serves a page of a batch's units: ?from=N (0 by default)
// and ?limit=M (DefaultUnitsPage by default, MaxUnitsPage at most).
func (h *handler) batchUnits(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err := queryInt(q, "from", 0, 0, jobs.MaxUnits)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	limit, err := queryInt(q, "limit", DefaultUnitsPage, 1, MaxUnitsPage)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	units, err := h.svc.BatchUnits(r.Context(), r.PathValue("id"), from, limit)
	replyList(h, w, r, units, err)
}

// queryInt reads the whole number q[name], def when it is absent; one
// that is not a number, or outside lo to hi, is ErrBadRequest.
func queryInt(q url.Values, name string, def, lo, hi int) (int, error) {
	if !q.Has(name) {
		return def, nil
	}
	s := q.Get(name)
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%w: %s=%.40q: want a whole number from %d to %d", ErrBadRequest, name, s, lo, hi)
	}
	return n, nil
}

func batchPath(id string) string { return "/v1/batches/" + url.PathEscape(id) }

// SubmitBatch submits a batch whose files are CIDs (see UploadBatch).
func (c *Client) SubmitBatch(ctx context.Context, b *jobs.Batch) (Batch, error) {
	return submit[Batch](ctx, c, "/v1/batches", "batch", b)
}

// ListBatches lists the daemon's batches.
func (c *Client) ListBatches(ctx context.Context) ([]Batch, error) {
	return get[[]Batch](ctx, c, http.MethodGet, "/v1/batches")
}

// GetBatch returns one batch.
func (c *Client) GetBatch(ctx context.Context, id string) (Batch, error) {
	return get[Batch](ctx, c, http.MethodGet, batchPath(id))
}

// CancelBatch cancels a batch.
func (c *Client) CancelBatch(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, batchPath(id), nil, nil)
}

// BatchUnits returns the units [from, from+limit) of a batch; limit is at
// most MaxUnitsPage.
func (c *Client) BatchUnits(ctx context.Context, id string, from, limit int) ([]BatchUnit, error) {
	q := url.Values{"from": {strconv.Itoa(from)}, "limit": {strconv.Itoa(limit)}}
	return get[[]BatchUnit](ctx, c, http.MethodGet, batchPath(id)+"/units?"+q.Encode())
}

// WatchBatch follows a batch's snapshots. The channel gets the batch as
// it is, then as it changes, and is closed once it ended, when the stream
// ends or when ctx is done.
func (c *Client) WatchBatch(ctx context.Context, id string) (<-chan Batch, error) {
	return watchNDJSON(ctx, c, batchPath(id)+"/events", func(b Batch) bool { return b.State != BatchRunning })
}

// UploadBatch uploads what a batch names on the local disk (its
// template's module, image archive and input directory, and the files of
// its units' directory) and replaces the paths with CIDs: a batch over a
// directory becomes a batch over its files.
func UploadBatch(ctx context.Context, svc Service, b *jobs.Batch) error {
	if err := Upload(ctx, svc, &b.Template); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	if b.Units.Dir == "" {
		return nil
	}
	dir := b.DirPath()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("units.dir: %w", err)
	}
	files := map[string]string{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // a unit is a file of the directory itself
		}
		if len(files) == jobs.MaxUnits {
			return fmt.Errorf("units.dir: %s holds more than %d files, the most units a batch has", dir, jobs.MaxUnits)
		}
		c, err := putFile(ctx, svc, filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("units.dir: uploading %s: %w", e.Name(), err)
		}
		files[e.Name()] = c
	}
	if len(files) == 0 {
		return fmt.Errorf("units.dir: %s holds no files", dir)
	}
	b.Units.Dir, b.Units.Files = "", files
	return nil
}
