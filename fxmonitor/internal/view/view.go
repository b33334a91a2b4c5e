// Package view holds the JSON documents that more than one fxmonitor
// package serves (/statusz, the dashboard's state): they are views, not
// API, so they live here rather than among the exported types.
package view

import (
	"encoding/json"
	"net/http"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
)

// Service is the service's identity.
type Service struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Environment string `json:"environment"`
	InstanceID  string `json:"instance_id"`
}

// ServiceOf returns the view of info.
func ServiceOf(info fxcore.ServiceInfo) Service {
	return Service{Name: info.Name, Version: info.Version, Environment: info.Environment, InstanceID: info.InstanceID}
}

// Breaker is a circuit breaker's state and counts.
type Breaker struct {
	Name                 string  `json:"name"`
	State                string  `json:"state"`
	Requests             uint32  `json:"requests"`
	TotalSuccesses       uint32  `json:"total_successes"`
	TotalFailures        uint32  `json:"total_failures"`
	ConsecutiveFailures  uint32  `json:"consecutive_failures"`
	OpenTimeoutSeconds   float64 `json:"open_timeout_seconds"`
	TripAfterConsecutive uint32  `json:"trip_after_consecutive_failures"`
}

// Breakers returns the views of bs' breakers, sorted by name; an empty
// list (not nil) when there are none or bs is nil.
func Breakers(bs *breaker.Breakers) []Breaker {
	out := []Breaker{}
	if bs == nil {
		return out
	}
	for _, br := range bs.All() {
		c, s := br.Counts(), br.Settings()
		out = append(out, Breaker{
			Name: br.Name(), State: br.State().String(), Requests: c.Requests,
			TotalSuccesses: c.TotalSuccesses, TotalFailures: c.TotalFailures,
			ConsecutiveFailures: c.ConsecutiveFailures, OpenTimeoutSeconds: s.Timeout.Seconds(),
			TripAfterConsecutive: s.ConsecutiveFailures,
		})
	}
	return out
}

// WriteJSON answers 200 with v as indented JSON, not to be cached.
func WriteJSON(w http.ResponseWriter, v any) {
	WriteJSONStatus(w, http.StatusOK, v)
}

// WriteJSONStatus answers status with v as indented JSON, not to be cached.
func WriteJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
