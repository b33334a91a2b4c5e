package fxmonitor

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// Statusz is the /statusz document: what a dashboard needs in one request.
type Statusz struct {
	Service       ServiceStatus      `json:"service"`
	StartedAt     time.Time          `json:"started_at"`
	UptimeSeconds float64            `json:"uptime_seconds"`
	Probes        map[string]Verdict `json:"probes"`
	Checks        []CheckResult      `json:"checks"`
	Breakers      []BreakerStatus    `json:"breakers"`
	Alerts        []Alert            `json:"alerts"`
	Rules         int                `json:"rules"`
}

// ServiceStatus is the service's identity in Status.
type ServiceStatus struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Environment string `json:"environment"`
	InstanceID  string `json:"instance_id"`
}

// BreakerStatus is a breaker in Status.
type BreakerStatus struct {
	Name                 string  `json:"name"`
	State                string  `json:"state"`
	Requests             uint32  `json:"requests"`
	TotalSuccesses       uint32  `json:"total_successes"`
	TotalFailures        uint32  `json:"total_failures"`
	ConsecutiveFailures  uint32  `json:"consecutive_failures"`
	OpenTimeoutSeconds   float64 `json:"open_timeout_seconds"`
	TripAfterConsecutive uint32  `json:"trip_after_consecutive_failures"`
}

// StatusPage builds /statusz from the cached state; it runs no check.
type StatusPage struct {
	Info     fxcore.ServiceInfo
	Health   *Health
	Breakers *Breakers
	Alerts   *Alerts
	Started  time.Time
}

// Statusz returns the document.
func (p *StatusPage) Statusz() Statusz {
	st := Statusz{
		Service: ServiceStatus{Name: p.Info.Name, Version: p.Info.Version, Environment: p.Info.Environment,
			InstanceID: p.Info.InstanceID},
		StartedAt:     p.Started,
		UptimeSeconds: time.Since(p.Started).Seconds(),
		Probes:        map[string]Verdict{},
		Checks:        []CheckResult{},
		Breakers:      []BreakerStatus{},
		Alerts:        []Alert{},
	}
	if p.Health != nil {
		for i, k := range kinds {
			st.Probes[kindNames[i]] = p.Health.verdict(k)
		}
		st.Checks = p.Health.Results()
	}
	if p.Breakers != nil {
		for _, br := range p.Breakers.All() {
			c := br.Counts()
			st.Breakers = append(st.Breakers, BreakerStatus{
				Name: br.Name(), State: br.State().String(), Requests: c.Requests,
				TotalSuccesses: c.TotalSuccesses, TotalFailures: c.TotalFailures,
				ConsecutiveFailures: c.ConsecutiveFailures, OpenTimeoutSeconds: br.retryAfter().Seconds(),
				TripAfterConsecutive: br.settings.ConsecutiveFailures,
			})
		}
	}
	if p.Alerts != nil {
		if act := p.Alerts.Active(); act != nil {
			st.Alerts = act
		}
		st.Rules = len(p.Alerts.rules)
	}
	return st
}

// ServeHTTP serves the document as JSON.
func (p *StatusPage) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, p.Statusz())
}

// AlertsHandler serves the pending, firing and recently resolved alerts as
// JSON (/alerts).
func (a *Alerts) AlertsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		act := a.Active()
		if act == nil {
			act = []Alert{}
		}
		writeJSON(w, struct {
			Alerts []Alert `json:"alerts"`
		}{act})
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
