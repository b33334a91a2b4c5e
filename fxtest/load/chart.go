package load

import (
	"errors"
	"fmt"
	"html"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// EnvArtifactsDir names the directory Test and TestCompare write their
// charts to (CI keeps it with the run's artifacts); unset, they write none.
const EnvArtifactsDir = "MARTY_ARTIFACTS_DIR"

// chartArtifact writes the chart of a test's run to MARTY_ARTIFACTS_DIR,
// as load-<test name>.html (-2, -3 ... for the test's later runs), and
// logs its path; a failure to write is logged, not fatal.
func chartArtifact(t testing.TB, title string, rs []*Result, c *Comparison) {
	t.Helper()
	dir := os.Getenv(EnvArtifactsDir)
	if dir == "" {
		return
	}
	path, err := writeChartFile(dir, t.Name(), title, rs, c)
	if err != nil {
		t.Logf("load: write the chart: %v", err)
		return
	}
	t.Logf("load: chart written to %s", path)
}

func writeChartFile(dir, testName, title string, rs []*Result, c *Comparison) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := "load-" + sanitize(testName)
	page := []byte(Chart(testName+": "+title, rs, c))
	for n := 1; n < 1000; n++ {
		name := base + ".html"
		if n > 1 {
			name = fmt.Sprintf("%s-%d.html", base, n)
		}
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = f.Write(page)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return path, err
	}
	return "", fmt.Errorf("too many charts named %s-N.html in %s", base, dir)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}

// Chart renders results as a self-contained HTML page (inline SVG and CSS,
// no script, nothing fetched): the latency percentile curve of each result,
// the throughput over time (for a comparison, the throughput of each
// round), and the report table. c may be nil.
func Chart(title string, rs []*Result, c *Comparison) string {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>`)
	b.WriteString(html.EscapeString(title))
	b.WriteString(`</title><style>body{font:14px sans-serif;margin:2em;color:#222}` +
		`svg{background:#fff;border:1px solid #ccc;margin:1em 0}pre{background:#f6f6f6;padding:1em;overflow:auto}` +
		`.axis{stroke:#999}.grid{stroke:#eee}text{font:12px sans-serif;fill:#444}</style></head><body>`)
	fmt.Fprintf(&b, "<h1>%s</h1>\n", html.EscapeString(title))

	// The percentile curve: x is the number of nines (90% is 1, 99% is 2 ...).
	var count int64
	var curves []series
	for _, r := range rs {
		count = max(count, r.Count)
		s := series{name: r.Name}
		for _, br := range r.Histogram.CumulativeDistributionWithTicks(5) {
			s.xs = append(s.xs, nines(br.Quantile/100))
			s.ys = append(s.ys, float64(br.ValueAt)/1e6)
		}
		curves = append(curves, s)
	}
	top := math.Min(6, math.Max(2, math.Ceil(math.Log10(float64(max(count, 1))))))
	var xt []tick
	for k := 0.0; k <= top; k++ {
		xt = append(xt, tick{k, nineLabel(int(k))})
	}
	for i := range curves {
		for j := range curves[i].xs {
			curves[i].xs[j] = math.Min(curves[i].xs[j], top)
		}
	}
	b.WriteString("<h2>Latency by percentile</h2>\n")
	b.WriteString(svgChart("percentile", "latency (ms)", curves, xt, 0, top, true))

	// The throughput: over time for runs, by round for a comparison.
	var thr []series
	var xMax float64
	xLabel := "time (s)"
	if c != nil {
		xLabel = "round"
		for i, rounds := range c.Rounds {
			s := series{name: c.Results[i].Name}
			for k, rd := range rounds {
				s.xs = append(s.xs, float64(k+1))
				s.ys = append(s.ys, rd.Throughput)
			}
			xMax = math.Max(xMax, float64(len(rounds)))
			thr = append(thr, s)
		}
	} else {
		for _, r := range rs {
			s := series{name: r.Name}
			for _, p := range r.Timeline {
				mid := p.At + r.BucketWidth/2
				s.xs = append(s.xs, mid.Seconds())
				s.ys = append(s.ys, p.Rate)
			}
			xMax = math.Max(xMax, (r.Elapsed + r.BucketWidth).Seconds())
			thr = append(thr, s)
		}
	}
	b.WriteString("<h2>Throughput (operations/s)</h2>\n")
	b.WriteString(svgChart(xLabel, "ops/s", thr, linearTicks(0, xMax), 0, xMax, false))

	b.WriteString("<h2>Figures</h2>\n<pre>")
	if c != nil {
		b.WriteString(html.EscapeString(c.String()))
	} else {
		b.WriteString(html.EscapeString(table(rs, nil)))
	}
	b.WriteString("</pre></body></html>\n")
	return b.String()
}

type series struct {
	name   string
	xs, ys []float64
}

type tick struct {
	v     float64
	label string
}

// nines maps a quantile (0 to 1) to -log10(1-q): 0.9 is 1, 0.99 is 2.
func nines(q float64) float64 {
	if q >= 1 {
		return math.Inf(1)
	}
	return -math.Log10(1 - q)
}

func nineLabel(k int) string {
	return strconv.FormatFloat(100-100*math.Pow(10, -float64(k)), 'f', max(0, k-2), 64) + "%"
}

// linearTicks returns about five round ticks from lo to hi.
func linearTicks(lo, hi float64) []tick {
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	var out []tick
	for v := math.Ceil(lo/step) * step; v <= hi+step/1e9; v += step {
		out = append(out, tick{v, trimFloat(v)})
	}
	return out
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// svgChart draws the series as lines (steps when step is true) on a chart
// with the x ticks given and y from 0 to a round value above the largest.
func svgChart(xLabel, yLabel string, ss []series, xt []tick, xMin, xMax float64, step bool) string {
	const w, h, left, right, top, bottom = 760.0, 320.0, 70.0, 180.0, 20.0, 45.0
	pw, ph := w-left-right, h-top-bottom
	var yMax float64
	for _, s := range ss {
		for _, y := range s.ys {
			yMax = math.Max(yMax, y)
		}
	}
	yt := linearTicks(0, yMax)
	if len(yt) > 0 {
		yMax = math.Max(yMax, yt[len(yt)-1].v)
	}
	if yMax <= 0 {
		yMax = 1
	}
	if xMax <= xMin {
		xMax = xMin + 1
	}
	px := func(x float64) float64 { return left + (x-xMin)/(xMax-xMin)*pw }
	py := func(y float64) float64 { return top + ph - y/yMax*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%g" height="%g" viewBox="0 0 %g %g" role="img">`, w, h, w, h)
	for _, t := range yt {
		y := py(t.v)
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, left, y, left+pw, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, left-6, y+4, html.EscapeString(t.label))
	}
	for _, t := range xt {
		x := px(t.v)
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x, top, x, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, top+ph+16, html.EscapeString(t.label))
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, left, top+ph, left+pw, top+ph)
	fmt.Fprintf(&b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, left, top, left, top+ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, left+pw/2, h-6, html.EscapeString(xLabel))
	fmt.Fprintf(&b, `<text x="14" y="%.1f" text-anchor="middle" transform="rotate(-90 14 %.1f)">%s</text>`, top+ph/2, top+ph/2, html.EscapeString(yLabel))
	for i, s := range ss {
		color := palette[i%len(palette)]
		var pts []string
		for j := range s.xs {
			x, y := px(s.xs[j]), py(s.ys[j])
			if step && j > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, py(s.ys[j-1])))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color, strings.Join(pts, " "))
		}
		ly := top + 14 + float64(i)*18
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="4" fill="%s"/>`, left+pw+12, ly-6, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, left+pw+30, ly, html.EscapeString(clipName(s.name)))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func clipName(s string) string {
	if r := []rune(s); len(r) > 22 {
		return string(r[:21]) + "…"
	}
	return s
}
