// Package alert evaluates alert rules in-process against a Prometheus
// registry, with Prometheus' semantics: each series matching a Rule goes
// inactive → pending → firing → resolved, including rate() over a window
// for counters. Firing and resolved alerts go to Notifiers (a LogNotifier,
// an AlertmanagerNotifier posting to Alertmanager's v2 API, or your own),
// each on its own goroutine and queue, so a slow notifier never holds up
// evaluation. The same rules export as a Prometheus rule file (RuleFile).
//
// With Fx, fxmonitor.Module builds the Evaluator from the rules registered
// with fxmonitor.AsAlertRule (fxmonitor.AlertRule is this package's Rule)
// and the notifiers registered with fxmonitor.AsNotifier, and serves
// /alerts and /alerts/rules.yaml on the admin server.
//
// # Without Fx
//
// New takes the rules, the Gatherer they read and plain Options; Start
// evaluates every Interval, Stop ends and lets the notifiers finish:
//
//	ev, err := alert.New([]alert.Rule{{
//		Name: "QueueBacklog", Metric: "queue_depth", Op: alert.OpGreater, Threshold: 100,
//		For: time.Minute, Summary: "{{ $labels.queue }} has {{ $value }} items",
//	}}, reg, alert.Options{Notifiers: []alert.Notifier{alert.NewLogNotifier(log)}})
//	if err != nil {
//		return err
//	}
//	_ = ev.Start(ctx)
//	defer ev.Stop(ctx)
//	mux.Handle("GET /alerts", ev.Handler())
//
// Errors start with "fxmonitor:", like those of every fxmonitor package.
package alert
