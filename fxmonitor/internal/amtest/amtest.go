// Package amtest is a fake Alertmanager for fxmonitor's tests: an httptest
// server that decodes what it receives as Alertmanager's v2 API
// (POST /api/v2/alerts, a JSON list of postable alerts) and refuses what
// Alertmanager would refuse, with a local copy of the wire format instead
// of Alertmanager's own module (a test-only dependency too heavy for the
// library's go.mod; tests/promcompat checks the format against it).
package amtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Alert is a postable alert as Alertmanager's v2 API reads it
// (models.PostableAlert).
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Server is the fake Alertmanager.
type Server struct {
	*httptest.Server

	mu     sync.Mutex
	posts  [][]Alert
	tries  int
	status []int
}

// New starts a fake Alertmanager that answers the given statuses to its
// first requests, in order, and 200 after; it closes at the test's cleanup.
func New(t testing.TB, status ...int) *Server {
	s := &Server{status: status}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close) // after an app stopped in an earlier-registered cleanup
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	if len(s.status) > 0 {
		code := s.status[0]
		s.status = s.status[1:]
		if code != http.StatusOK {
			http.Error(w, "try later", code)
			return
		}
	}
	alerts, err := Decode(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.posts = append(s.posts, alerts)
}

// Decode reads a POST /api/v2/alerts body strictly: unknown fields, an
// alert without labels, an empty label name or value, and times that are
// not RFC 3339 are errors, as Alertmanager's validation makes them.
func Decode(body []byte) ([]Alert, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var alerts []Alert
	if err := dec.Decode(&alerts); err != nil {
		return nil, fmt.Errorf("decode alerts: %w", err)
	}
	for i, a := range alerts {
		if len(a.Labels) == 0 {
			return nil, fmt.Errorf("alert %d: labels are required", i)
		}
		for k, v := range a.Labels {
			if k == "" || v == "" {
				return nil, fmt.Errorf("alert %d: empty label %q=%q", i, k, v)
			}
		}
		if !a.EndsAt.IsZero() && a.EndsAt.Before(a.StartsAt) {
			return nil, errors.New("endsAt is before startsAt")
		}
	}
	return alerts, nil
}

// Received returns the accepted posts, in order.
func (s *Server) Received() [][]Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]Alert(nil), s.posts...)
}

// Attempts returns how many POSTs arrived, refused ones included.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tries
}
