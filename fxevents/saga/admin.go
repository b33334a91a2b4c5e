package saga

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// The admin routes. They show states and change sagas, so fxhttp protects
// them with MARTY_HTTP_ADMIN_TOKEN like every admin route but the probes
// and /metrics. A saga is named by its id, "<saga>:<key>".

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// splitID splits "<saga>:<key>".
func splitID(id string) (string, string, bool) {
	name, key, ok := strings.Cut(id, ":")
	return name, key, ok && name != "" && key != ""
}

// newListRoute serves GET /sagas[?saga=&status=&stuck=1&limit=].
func newListRoute(r *Runtime) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		f := Filter{Saga: q.Get("saga"), Stuck: q.Get("stuck") == "1" || q.Get("stuck") == "true"}
		for s := range strings.SplitSeq(q.Get("status"), ",") {
			if s != "" {
				f.Status = append(f.Status, Status(s))
			}
		}
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a positive integer"})
				return
			}
			f.Limit = n
		}
		list, err := r.List(req.Context(), f)
		if err != nil {
			r.internal(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"sagas": list})
	})
}

// newGetRoute serves GET /sagas/{id}: the saga and its history.
func newGetRoute(r *Runtime) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name, key, ok := splitID(req.PathValue("id"))
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the id is <saga>:<key>"})
			return
		}
		in, err := r.Get(req.Context(), name, key)
		if errors.Is(err, ErrNotFound) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no saga " + strconv.Quote(req.PathValue("id"))})
			return
		}
		if err != nil {
			r.internal(w, err)
			return
		}
		hist, err := r.History(req.Context(), name, key)
		if err != nil {
			r.internal(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"saga": in, "history": hist})
	})
}

// newActionRoute serves POST /sagas/{id}/retry and /abort.
func newActionRoute(r *Runtime, action string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.PathValue("id")
		name, key, ok := splitID(id)
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the id is <saga>:<key>"})
			return
		}
		var err error
		if action == "retry" {
			err = r.Retry(req.Context(), name, key)
		} else {
			err = r.Abort(req.Context(), name, key)
		}
		switch {
		case errors.Is(err, ErrNotFound):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no saga " + strconv.Quote(id)})
		case err != nil:
			r.internal(w, err)
		default:
			writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": action + " done"})
		}
	})
}

// internal answers a failure without its text (it may hold driver
// details), logging it with a reference.
func (r *Runtime) internal(w http.ResponseWriter, err error) {
	ref := strconv.FormatInt(time.Now().UnixNano(), 36)
	r.log.Error("saga admin request failed", zap.String("ref", ref), zap.Error(err))
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error", "ref": ref})
}
