package dashboard

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Panel is a module's panel on the dashboard, registered with
// fxmonitor.AsPanel: figures read from the app's Prometheus registry
// (Stats, some of them charted) and, optionally, a Table of rows the module
// lists itself, each with an Action button calling one of the module's
// admin routes. The dashboard knows nothing of the module: fxevents'
// event bus panel (outbox figures, dead letters and their re-drive) is one.
type Panel struct {
	// Name identifies the panel: unique in the app, lower case letters,
	// digits, "-" and "_" (the page's section is "panel-<name>").
	Name string
	// Title heads the panel.
	Title string
	// Subtitle follows the title in small print (optional).
	Subtitle string
	// Order places the panel among the others: ascending, then by Name
	// (registration order means nothing). They come after the built-in
	// panels (health, alerts, HTTP, gRPC) and before breakers and the graph.
	Order int
	// Stats are the panel's figures, in order.
	Stats []Stat
	// Table, when set, lists rows under the figures.
	Table *Table
}

// StatKind says how a Stat reads its metric and shows its value.
type StatKind string

// The kinds of Stat. Each reads the sum of the metric's series.
const (
	// Gauge is the last value, shown as a count.
	Gauge StatKind = "gauge"
	// Seconds is the last value of a gauge in seconds, shown as a duration.
	Seconds StatKind = "seconds"
	// Rate is a counter's increase per second over the window; its chart
	// points are over the last 10 seconds before each sample.
	Rate StatKind = "rate"
	// Total is a counter's value, shown as a count.
	Total StatKind = "total"
)

// Stat is one figure of a Panel, read from the registry at every sample.
// A metric not (yet) in the registry shows as "–".
type Stat struct {
	// Label names the figure ("pending", "delivered/s").
	Label string
	// Metric is the metric family's name ("marty_outbox_pending").
	Metric string
	// Kind says how it is read and shown.
	Kind StatKind
	// Chart draws it in the panel's chart too.
	Chart bool
	// Color is the CSS color of its chart line ("": one of the page's).
	Color string
}

// Table is a list of rows a module provides (fxevents' dead letters).
type Table struct {
	// Title heads the table ("Dead letters").
	Title string
	// Columns are the fields shown, in order.
	Columns []Column
	// Empty is shown when there is no row ("No dead letter.").
	Empty string
	// Rows returns the rows: a value that encodes as a JSON array of
	// objects. The dashboard calls it at most once per sample for its live
	// updates (and on each GET api/state), with a context bounded by
	// max(Interval, 2s); an error is shown above the table.
	Rows func(ctx context.Context) (any, error)
	// Key is the row field that identifies a row, the "{id}" of Action
	// (default "id").
	Key string
	// Action, when set, adds a button to each row.
	Action *Action
}

// ColumnFormat says how a Column shows its field.
type ColumnFormat string

// The column formats.
const (
	// FormatText shows the field as it is.
	FormatText ColumnFormat = ""
	// FormatTime shows an RFC 3339 time as the browser's local time of day.
	FormatTime ColumnFormat = "time"
	// FormatError shows the field as an error (in red).
	FormatError ColumnFormat = "error"
)

// Column is a field of a Table's rows.
type Column struct {
	// Title heads the column.
	Title string `json:"title"`
	// Field is the row's JSON field shown.
	Field string `json:"field"`
	// Format says how it is shown.
	Format ColumnFormat `json:"format,omitempty"`
}

// Action is a button on each row of a Table: the page sends Method to Path
// on the admin server, with "{id}" replaced by the row's Key field. Path is
// one of the module's own admin routes (fxhttp.AsAdminRoute), which keeps
// its protection: the admin token (the page's cookie) and fxhttp's refusal
// of cross-origin browser requests. The dashboard calls nothing itself.
type Action struct {
	// Label is the button's text ("re-drive").
	Label string `json:"label"`
	// Method is the HTTP method (default POST).
	Method string `json:"method"`
	// Path is the admin route's path, with "{id}" ("/events/dead/{id}/retry").
	Path string `json:"path"`
}

var panelName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Validate reports a panel without a valid Name or a Title, a Stat without
// a Label, a Metric or a known Kind, or a Table without Rows or Columns, or
// whose Action has no Label or a Path that is not an absolute path with
// "{id}" in it.
func (p Panel) Validate() error {
	if !panelName.MatchString(p.Name) {
		return fmt.Errorf("panel %q: the name must match %s", p.Name, panelName)
	}
	if p.Title == "" {
		return fmt.Errorf("panel %q needs a Title", p.Name)
	}
	for _, s := range p.Stats {
		switch {
		case s.Label == "" || s.Metric == "":
			return fmt.Errorf("panel %q: a stat needs a Label and a Metric (got %q, %q)", p.Name, s.Label, s.Metric)
		case s.Kind != Gauge && s.Kind != Seconds && s.Kind != Rate && s.Kind != Total:
			return fmt.Errorf("panel %q: stat %q: unknown kind %q, want gauge, seconds, rate or total", p.Name, s.Label, s.Kind)
		}
	}
	if p.Table == nil {
		return nil
	}
	t := p.Table
	if t.Rows == nil || len(t.Columns) == 0 {
		return fmt.Errorf("panel %q: its table needs Rows and Columns", p.Name)
	}
	if a := t.Action; a != nil {
		if a.Label == "" || !strings.HasPrefix(a.Path, "/") || !strings.Contains(a.Path, "{id}") {
			return fmt.Errorf("panel %q: its table's action needs a Label and a Path such as /things/{id}/retry (got %q)", p.Name, a.Path)
		}
	}
	return nil
}

// validatePanels checks each panel and that names are unique; the error
// lists every problem on one line.
func validatePanels(panels []Panel) error {
	seen := map[string]bool{}
	var errs []string
	for _, p := range panels {
		if err := p.Validate(); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Sprintf("two panels are named %q", p.Name))
		}
		seen[p.Name] = true
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}
