package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opendms/dms/dms/api"
)

func (h *handler) listTasks(w http.ResponseWriter, r *http.Request, svc Service) {
	q, err := taskQuery(r)
	var list []Task
	if err == nil {
		list, err = svc.ListTasks(r.Context(), q)
	}
	replyList(h, w, r, list, err)
}

// taskQuery reads ?function=, ?state= and ?limit=; any other parameter is
// refused.
func taskQuery(r *http.Request) (TaskQuery, error) {
	var q TaskQuery
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return q, fmt.Errorf("%w: query: %w", api.ErrBadRequest, err)
	}
	for key, vs := range values {
		var v string
		v, err = single(key, vs)
		switch {
		case err != nil:
		case key == "function":
			q.Function = v
		case key == "state":
			q.State = TaskState(v)
		case key == "limit":
			q.Limit, err = strconv.Atoi(v)
			if err != nil || q.Limit < 0 {
				err = fmt.Errorf("%w: query: limit=%q: want a number of tasks", api.ErrBadRequest, v)
			}
		default:
			err = fmt.Errorf("%w: query: unknown parameter %q (want function, state or limit)", api.ErrBadRequest, key)
		}
		if err != nil {
			return q, err
		}
	}
	return q, nil
}

func (h *handler) getTask(w http.ResponseWriter, r *http.Request, svc Service) {
	h.replyTask(w, r, svc.GetTask)
}

func (h *handler) stopTask(w http.ResponseWriter, r *http.Request, svc Service) {
	h.replyTask(w, r, svc.StopTask)
}

// replyTask answers with the task the path's id names, as do returns it.
func (h *handler) replyTask(w http.ResponseWriter, r *http.Request, do func(context.Context, string) (Task, error)) {
	id, err := pathName(r, "id")
	var task Task
	if err == nil {
		task, err = do(r.Context(), id)
	}
	h.reply(w, r, http.StatusOK, task, err)
}

// taskResult answers with the function's response, as a sync call would.
func (h *handler) taskResult(w http.ResponseWriter, r *http.Request, svc Service) {
	id, err := pathName(r, "id")
	var resp Response
	if err == nil {
		resp, err = svc.TaskResult(r.Context(), id)
	}
	if err == nil && resp.Task == "" {
		resp.Task = id
	}
	h.respond(w, r, resp, err)
}

func (h *handler) listTags(w http.ResponseWriter, r *http.Request, svc Service) {
	list, err := svc.ListTags(r.Context())
	replyList(h, w, r, list, err)
}
