package gateway

import (
	"fmt"
	"net/http"

	"github.com/opendms/dms/dms/api"
)

func (h *handler) createEndpoint(w http.ResponseWriter, r *http.Request, svc Service) {
	var spec EndpointSpec
	if err := readJSON(w, r, &spec); err != nil {
		h.fail(w, r, err)
		return
	}
	e, err := svc.CreateEndpoint(r.Context(), spec)
	h.reply(w, r, http.StatusCreated, e, err)
}

func (h *handler) listEndpoints(w http.ResponseWriter, r *http.Request, svc Service) {
	q, err := listQuery(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	list, err := svc.ListEndpoints(r.Context(), q.Query)
	replyGroups(h, w, r, q, list, func(e Endpoint) map[string]string { return e.Tags }, err)
}

func (h *handler) getEndpoint(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	var e Endpoint
	if err == nil {
		e, err = svc.GetEndpoint(r.Context(), name)
	}
	h.reply(w, r, http.StatusOK, e, err)
}

// updateEndpoint replaces the spec of the endpoint the path names; a body
// that names another is refused rather than renaming it.
func (h *handler) updateEndpoint(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	var spec EndpointSpec
	if err == nil {
		err = readJSON(w, r, &spec)
	}
	if err == nil && spec.Name != "" && spec.Name != name {
		err = fmt.Errorf("%w: request body: name %q is not the endpoint %q (an endpoint cannot be renamed)", api.ErrBadRequest, spec.Name, name)
	}
	var e Endpoint
	if err == nil {
		spec.Name = name
		e, err = svc.UpdateEndpoint(r.Context(), spec)
	}
	h.reply(w, r, http.StatusOK, e, err)
}

func (h *handler) deleteEndpoint(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	if err == nil {
		err = svc.DeleteEndpoint(r.Context(), name)
	}
	h.replyNone(w, r, err)
}
