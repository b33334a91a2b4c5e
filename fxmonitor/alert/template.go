package alert

import (
	"strings"
	"text/template"
)

// Prometheus runs annotation templates with $labels and $value defined by
// this prelude; we do the same so one text works in-process and in the
// exported rule file.
const templatePrelude = "{{$labels := .Labels}}{{$value := .Value}}"

type templateData struct {
	Labels map[string]string
	Value  float64
}

func parseTemplate(text string) (*template.Template, error) {
	if !strings.Contains(text, "{{") {
		return nil, nil
	}
	return template.New("").Option("missingkey=zero").Parse(templatePrelude + text)
}

// expand renders an annotation; on a template error it returns the text as it is.
func expand(text string, labels map[string]string, value float64) string {
	t, err := parseTemplate(text)
	if err != nil || t == nil {
		return text
	}
	var b strings.Builder
	if err := t.Execute(&b, templateData{Labels: labels, Value: value}); err != nil {
		return text
	}
	return b.String()
}
