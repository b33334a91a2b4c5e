package alert

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Expr returns the rule as a PromQL expression:
// `metric{k="v"} > 5`, or `rate(metric{k="v"}[5m]) > 5`.
func (r Rule) Expr() string {
	var b strings.Builder
	if r.Rate > 0 {
		b.WriteString("rate(")
	}
	b.WriteString(r.Metric)
	if len(r.Labels) > 0 {
		keys := make([]string, 0, len(r.Labels))
		for k := range r.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(strconv.Quote(r.Labels[k]))
		}
		b.WriteByte('}')
	}
	if r.Rate > 0 {
		b.WriteString("[" + promDuration(r.Rate) + "])")
	}
	b.WriteString(" " + string(r.Op) + " " + promFloat(r.Threshold))
	return b.String()
}

func promFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// promDuration writes a duration the way Prometheus reads it: 1h30m, 15s, 1s500ms.
func promDuration(d time.Duration) string {
	ms := d.Milliseconds()
	if ms <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		n    int64
		unit string
	}{{86400000 * 7, "w"}, {86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}} {
		if ms >= u.n {
			fmt.Fprintf(&b, "%d%s", ms/u.n, u.unit)
			ms %= u.n
		}
	}
	return b.String()
}

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string     `yaml:"name"`
	Interval string     `yaml:"interval,omitempty"`
	Rules    []promRule `yaml:"rules"`
}

type promRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// RuleFile returns the rules as a Prometheus rule file with one group named
// group, evaluated every interval (0: Prometheus' global interval).
func RuleFile(group string, interval time.Duration, rules []Rule) ([]byte, error) {
	g := ruleGroup{Name: group, Rules: []promRule{}}
	if interval > 0 {
		g.Interval = promDuration(interval)
	}
	for _, r := range rules {
		pr := promRule{Alert: r.Name, Expr: r.Expr(), Labels: map[string]string{}}
		if r.For > 0 {
			pr.For = promDuration(r.For)
		}
		sev := r.Severity
		if sev == "" {
			sev = "warning"
		}
		pr.Labels["severity"] = sev
		if r.Summary != "" || r.Description != "" {
			pr.Annotations = map[string]string{}
			if r.Summary != "" {
				pr.Annotations["summary"] = r.Summary
			}
			if r.Description != "" {
				pr.Annotations["description"] = r.Description
			}
		}
		g.Rules = append(g.Rules, pr)
	}
	out, err := yaml.Marshal(ruleFile{Groups: []ruleGroup{g}})
	if err != nil {
		return nil, fmt.Errorf("fxmonitor: encode rule file: %w", err)
	}
	return out, nil
}
