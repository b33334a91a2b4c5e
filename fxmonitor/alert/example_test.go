package alert_test

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/martyfx/martyfx/fxmonitor/alert"
)

// printer is a Notifier that prints what it receives.
type printer struct{ done chan struct{} }

func (printer) Name() string { return "printer" }
func (p printer) Notify(_ context.Context, alerts []alert.Alert) error {
	for _, a := range alerts {
		fmt.Println(a.State, a.Rule, a.Labels["queue"], a.Annotations["summary"])
	}
	close(p.done)
	return nil
}

// A rule without For fires at the first evaluation that sees its condition.
func ExampleNew() {
	reg := prometheus.NewRegistry()
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "queue_depth", Help: "Items waiting."}, []string{"queue"})
	reg.MustRegister(depth)
	p := printer{done: make(chan struct{})}
	ev, err := alert.New([]alert.Rule{{
		Name: "QueueBacklog", Metric: "queue_depth", Op: alert.OpGreater, Threshold: 100,
		Summary: "{{ $value }} items waiting",
	}}, reg, alert.Options{Notifiers: []alert.Notifier{p}})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	_ = ev.Start(ctx)
	defer func() { _ = ev.Stop(ctx) }()

	depth.WithLabelValues("emails").Set(250)
	ev.Evaluate() // the background loop does this every Interval
	<-p.done
	file, _ := alert.RuleFile("orders", 0, ev.Rules()) // served at /alerts/rules.yaml
	fmt.Print(string(file))
	// Output:
	// firing QueueBacklog emails 250 items waiting
	// groups:
	//     - name: orders
	//       rules:
	//         - alert: QueueBacklog
	//           expr: queue_depth > 100
	//           labels:
	//             severity: warning
	//           annotations:
	//             summary: '{{ $value }} items waiting'
}
