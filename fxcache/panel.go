package fxcache

import (
	"github.com/martyfx/martyfx/fxmonitor/dashboard"
)

// newPanel is the cache's panel on fxmonitor's dashboard.
func newPanel(c *Cache) dashboard.Panel {
	p := dashboard.Panel{Name: "cache", Title: "Cache", Subtitle: "in-process (otter)"}
	p.Stats = []dashboard.Stat{
		{Label: "hits/s", Metric: "marty_cache_hits_total", Kind: dashboard.Rate, Chart: true, Color: "#16a34a"},
		{Label: "misses/s", Metric: "marty_cache_misses_total", Kind: dashboard.Rate, Chart: true, Color: "#d97706"},
		{Label: "loads/s", Metric: "marty_cache_loads_total", Kind: dashboard.Rate},
		{Label: "load errors/s", Metric: "marty_cache_load_errors_total", Kind: dashboard.Rate, Chart: true, Color: "#dc2626"},
		{Label: "entries", Metric: "marty_cache_local_entries", Kind: dashboard.Gauge},
		{Label: "evictions (total)", Metric: "marty_cache_evictions_total", Kind: dashboard.Total},
	}
	if c.Redis() {
		p.Subtitle = "in-process (otter) in front of Redis"
		p.Stats = append(p.Stats,
			dashboard.Stat{Label: "redis up", Metric: "marty_cache_redis_up", Kind: dashboard.Gauge},
			dashboard.Stat{Label: "redis errors/s", Metric: "marty_cache_redis_errors_total", Kind: dashboard.Rate, Chart: true, Color: "#7c3aed"})
	}
	return p
}
