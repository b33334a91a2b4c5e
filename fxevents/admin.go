package fxevents

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// deadLetterView is a dead letter as the admin server shows it: a JSON
// payload inline, anything else base64.
type deadLetterView struct {
	ID          string            `json:"id"`
	Handler     string            `json:"handler"`
	EventID     string            `json:"event_id"`
	Type        string            `json:"type"`
	Source      string            `json:"source"`
	AggregateID string            `json:"aggregate_id,omitempty"`
	OccurredAt  time.Time         `json:"occurred_at"`
	Payload     json.RawMessage   `json:"payload"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Error       string            `json:"error"`
	Attempts    int               `json:"attempts"`
	At          time.Time         `json:"at"`
}

func viewOf(dl DeadLetter) deadLetterView {
	v := deadLetterView{
		ID: dl.ID, Handler: dl.Handler, EventID: dl.Envelope.ID, Type: dl.Envelope.Type, Source: dl.Envelope.Source,
		AggregateID: dl.Envelope.AggregateID, OccurredAt: dl.Envelope.OccurredAt, Metadata: dl.Envelope.Metadata,
		Error: dl.Error, Attempts: dl.Attempts, At: dl.At,
	}
	if dl.Envelope.ContentType() == ContentTypeJSON && json.Valid(dl.Envelope.Payload) {
		v.Payload = dl.Envelope.Payload
	} else {
		v.Payload, _ = json.Marshal(dl.Envelope.Payload)
	}
	return v
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newDeadListRoute serves GET /events/dead[?limit=N] (default 100).
func newDeadListRoute(store DeadLetterStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a positive integer"})
				return
			}
			limit = n
		}
		dls, err := store.List(r.Context(), limit)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		views := make([]deadLetterView, len(dls))
		for i, dl := range dls {
			views[i] = viewOf(dl)
		}
		writeJSON(w, http.StatusOK, map[string]any{"dead_letters": views})
	})
}

// newDeadRetryRoute serves POST /events/dead/{id}/retry.
func newDeadRetryRoute(store DeadLetterStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		err := store.Retry(r.Context(), id)
		switch {
		case errors.Is(err, ErrDeadLetterNotFound):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no dead letter " + strconv.Quote(id)})
		case err != nil:
			writeJSON(w, http.StatusBadGateway, map[string]string{"id": id, "error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": "redriven"})
		}
	})
}

// newDeadRetryAllRoute serves POST /events/dead/retry (every dead letter).
func newDeadRetryAllRoute(store DeadLetterStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := store.RetryAll(r.Context())
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]any{"redriven": n, "error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"redriven": n})
	})
}
