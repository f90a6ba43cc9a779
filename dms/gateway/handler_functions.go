package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/opendms/dms/dms/api"
)

func (h *handler) putModule(w http.ResponseWriter, r *http.Request, svc Service) {
	c, err := svc.PutModule(r.Context(), http.MaxBytesReader(w, r.Body, h.maxModule))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		err = fmt.Errorf("%w: module over %d bytes", api.ErrTooLarge, tooLarge.Limit)
	}
	h.reply(w, r, http.StatusCreated, map[string]string{"cid": c}, err)
}

func (h *handler) deploy(w http.ResponseWriter, r *http.Request, svc Service) {
	var d Deploy
	if err := readJSON(w, r, &d); err != nil {
		h.fail(w, r, err)
		return
	}
	rev, err := svc.Deploy(r.Context(), d)
	h.reply(w, r, http.StatusCreated, rev, err)
}

func (h *handler) listFunctions(w http.ResponseWriter, r *http.Request, svc Service) {
	q, err := listQuery(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	list, err := svc.ListFunctions(r.Context(), q.Query)
	replyGroups(h, w, r, q, list, func(f Function) map[string]string { return f.Tags }, err)
}

func (h *handler) getFunction(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	var fn Function
	if err == nil {
		fn, err = svc.GetFunction(r.Context(), name)
	}
	h.reply(w, r, http.StatusOK, fn, err)
}

func (h *handler) deleteFunction(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	if err == nil {
		err = svc.DeleteFunction(r.Context(), name)
	}
	h.replyNone(w, r, err)
}

func (h *handler) revisions(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	var list []Revision
	if err == nil {
		list, err = svc.Revisions(r.Context(), name)
	}
	replyList(h, w, r, list, err)
}

// setDefaultBody is PUT /v1/functions/{name}/default's body.
type setDefaultBody struct {
	Revision *int `json:"revision"`
}

func (h *handler) setDefault(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	var body setDefaultBody
	if err == nil {
		err = readJSON(w, r, &body)
	}
	if err == nil && body.Revision == nil {
		err = fmt.Errorf("%w: request body: revision is missing", api.ErrBadRequest)
	}
	var fn Function
	if err == nil {
		fn, err = svc.SetDefault(r.Context(), name, *body.Revision)
	}
	h.reply(w, r, http.StatusOK, fn, err)
}

// setTagsBody is PUT /v1/functions/{name}/tags's body. An empty object
// clears the tags; a missing one is refused, so a typo never does.
type setTagsBody struct {
	Tags *map[string]string `json:"tags"`
}

func (h *handler) setTags(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	var body setTagsBody
	if err == nil {
		err = readJSON(w, r, &body)
	}
	if err == nil && body.Tags == nil {
		err = fmt.Errorf(`%w: request body: tags is missing (send {"tags":{}} to clear them)`, api.ErrBadRequest)
	}
	var fn Function
	if err == nil {
		fn, err = svc.SetTags(r.Context(), name, *body.Tags)
	}
	h.reply(w, r, http.StatusOK, fn, err)
}

// setScaling serves PUT /v1/functions/{name}/scaling with a Scaling.
func (h *handler) setScaling(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	var body Scaling
	if err == nil {
		err = readJSON(w, r, &body)
	}
	var fn Function
	if err == nil {
		fn, err = svc.SetScaling(r.Context(), name, body)
	}
	h.reply(w, r, http.StatusOK, fn, err)
}

// instances serves GET /v1/functions/{name}/instances.
func (h *handler) instances(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	var list []Instance
	if err == nil {
		list, err = svc.Instances(r.Context(), name)
	}
	h.reply(w, r, http.StatusOK, list, err)
}

// listParams is a list request's query: the Query, and the tag key to
// group by (when Grouped).
type listParams struct {
	Query
	GroupBy string
	Grouped bool
}

// listQuery reads ?tag=K=V (repeatable), ?search=, ?sort= and ?group_by=KEY.
// Any other parameter is refused, so a misspelt filter never lists
// everything.
func listQuery(r *http.Request) (listParams, error) {
	var p listParams
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return p, fmt.Errorf("%w: query: %w", api.ErrBadRequest, err)
	}
	for key, vs := range values {
		switch key {
		case "tag":
			p.Tags, err = parseTags(vs)
		case "search":
			p.Search, err = single(key, vs)
		case "sort":
			p.Sort, err = single(key, vs)
		case "group_by":
			p.GroupBy, err = single(key, vs)
			p.Grouped = true
			if err == nil && p.GroupBy == "" {
				err = fmt.Errorf("%w: query: group_by needs a tag key", api.ErrBadRequest)
			}
		default:
			err = fmt.Errorf("%w: query: unknown parameter %q (want tag, search, sort or group_by)", api.ErrBadRequest, key)
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// parseTags reads K=V pairs; a key given twice is refused.
func parseTags(pairs []string) (map[string]string, error) {
	tags := make(map[string]string, len(pairs))
	for _, pair := range pairs {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: query: tag %q: want KEY=VALUE", api.ErrBadRequest, pair)
		}
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("%w: query: tag %q given twice", api.ErrBadRequest, k)
		}
		tags[k] = v
	}
	return tags, nil
}

// single is the one value of a query parameter.
func single(key string, vs []string) (string, error) {
	if len(vs) != 1 {
		return "", fmt.Errorf("%w: query: %s given %d times", api.ErrBadRequest, key, len(vs))
	}
	return vs[0], nil
}

// replyGroups replies with list, or with list grouped by p's tag key.
func replyGroups[T any](h *handler, w http.ResponseWriter, r *http.Request, p listParams, list []T, tags func(T) map[string]string, err error) {
	if err != nil || !p.Grouped {
		replyList(h, w, r, list, err)
		return
	}
	groups := GroupBy(list, tags, p.GroupBy)
	for i := range groups {
		if groups[i].Items == nil {
			groups[i].Items = []T{}
		}
	}
	replyList(h, w, r, groups, nil)
}
