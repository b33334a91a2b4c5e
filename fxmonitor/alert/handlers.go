package alert

import (
	"net/http"

	"github.com/martyfx/martyfx/fxmonitor/internal/view"
)

// Handler serves the pending, firing and recently resolved alerts as JSON,
// {"alerts": [...]} (fxmonitor.Module serves it at /alerts).
func (a *Evaluator) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		act := a.Active()
		if act == nil {
			act = []Alert{}
		}
		view.WriteJSON(w, struct {
			Alerts []Alert `json:"alerts"`
		}{act})
	})
}

// RulesHandler serves the rules as a Prometheus rule file with one group
// named group (fxmonitor.Module serves it at /alerts/rules.yaml, the group
// named after the service).
func (a *Evaluator) RulesHandler(group string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		body, err := RuleFile(group, a.opts.Interval, a.Rules())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
		_, _ = w.Write(body)
	})
}
