package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/opendms/dms/jobs"
)

// requireFlowCIDs refuses a flow that names local files: the API takes
// only what the daemon can find by CID.
func requireFlowCIDs(f *jobs.Flow) error {
	var problems []jobs.FieldError
	for _, s := range f.Steps {
		field := "steps." + s.Name
		if s.Job != nil {
			if err := requireCIDs(s.Job); err != nil {
				for _, p := range err.(*jobs.SpecError).Problems {
					problems = append(problems, jobs.FieldError{Field: field + "." + p.Field, Problem: p.Problem})
				}
			}
		}
		if s.ForEach != nil && s.ForEach.Dir != "" {
			problems = append(problems, jobs.FieldError{Field: field + ".for_each",
				Problem: fmt.Sprintf("directory %q is local: upload its files with POST /v1/blobs and give for_each: {files: {NAME: CID}}", s.ForEach.Dir)})
		}
	}
	if len(problems) > 0 {
		return &jobs.SpecError{Problems: problems, Doc: "flow spec"}
	}
	return nil
}

func flowPath(id string) string { return "/v1/flows/" + url.PathEscape(id) }

// SubmitFlow submits a flow whose files are CIDs (see UploadFlow).
func (c *Client) SubmitFlow(ctx context.Context, f *jobs.Flow) (Flow, error) {
	return submit[Flow](ctx, c, "/v1/flows", "flow", f)
}

// ListFlows lists the daemon's flows.
func (c *Client) ListFlows(ctx context.Context) ([]Flow, error) {
	return get[[]Flow](ctx, c, http.MethodGet, "/v1/flows")
}

// GetFlow returns one flow.
func (c *Client) GetFlow(ctx context.Context, id string) (Flow, error) {
	return get[Flow](ctx, c, http.MethodGet, flowPath(id))
}

// CancelFlow cancels a flow.
func (c *Client) CancelFlow(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, flowPath(id), nil, nil)
}

// WatchFlow streams a flow's events until the daemon ends the stream.
func (c *Client) WatchFlow(ctx context.Context, id string) (<-chan FlowEvent, error) {
	return watchNDJSON(ctx, c, flowPath(id)+"/events", func(FlowEvent) bool { return false })
}

// UploadFlow uploads what a flow names on the local disk (each job step's
// module, image archive and input directory, each for_each directory's
// files) and replaces the paths with CIDs.
func UploadFlow(ctx context.Context, svc Service, f *jobs.Flow) error {
	for _, s := range f.Steps {
		if s.Job != nil {
			if err := Upload(ctx, svc, s.Job); err != nil {
				return fmt.Errorf("steps.%s: %w", s.Name, err)
			}
		}
		if s.ForEach == nil || s.ForEach.Dir == "" {
			continue
		}
		dir := f.ForEachDirPath(s)
		files := map[string]string{}
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			c, err := putFile(ctx, svc, p)
			files[filepath.ToSlash(rel)] = c
			return err
		})
		if err != nil {
			return fmt.Errorf("steps.%s.for_each: uploading %s: %w", s.Name, dir, err)
		}
		if len(files) == 0 {
			return fmt.Errorf("steps.%s.for_each: %s holds no files", s.Name, dir)
		}
		s.ForEach.Dir, s.ForEach.Files = "", files
	}
	return nil
}
