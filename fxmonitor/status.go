package fxmonitor

import (
	"net/http"
	"time"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor/alert"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/fxmonitor/health"
	"github.com/martyfx/martyfx/fxmonitor/internal/view"
)

// statusz is the /statusz document: what a status page needs in one request.
type statusz struct {
	Service       view.Service              `json:"service"`
	StartedAt     time.Time                 `json:"started_at"`
	UptimeSeconds float64                   `json:"uptime_seconds"`
	Probes        map[string]health.Verdict `json:"probes"`
	Checks        []health.Result           `json:"checks"`
	Breakers      []view.Breaker            `json:"breakers"`
	Alerts        []alert.Alert             `json:"alerts"`
	Rules         int                       `json:"rules"`
}

// statusPage serves /statusz from the cached state; it runs no check.
type statusPage struct {
	info     fxcore.ServiceInfo
	health   *health.Health
	breakers *breaker.Breakers
	alerts   *alert.Evaluator
	started  time.Time
}

func newStatusPage(info fxcore.ServiceInfo, h *health.Health, b *breaker.Breakers, a *alert.Evaluator) http.Handler {
	return &statusPage{info: info, health: h, breakers: b, alerts: a, started: time.Now()}
}

func (p *statusPage) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	st := statusz{
		Service:       view.ServiceOf(p.info),
		StartedAt:     p.started,
		UptimeSeconds: time.Since(p.started).Seconds(),
		Probes:        p.health.Verdicts(),
		Checks:        p.health.Results(),
		Breakers:      view.Breakers(p.breakers),
		Alerts:        []alert.Alert{},
		Rules:         len(p.alerts.Rules()),
	}
	if act := p.alerts.Active(); act != nil {
		st.Alerts = act
	}
	view.WriteJSON(w, st)
}
