package saga

import (
	"embed"
	"io/fs"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the goose migrations of the marty_saga,
// marty_saga_timer and marty_saga_step tables, with a "postgres" and a
// "sqlite" directory. The Module registers them with
// fxrepo.AsOptionalMigrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

// Module provides the saga Config (section "saga") and the *Runtime of the
// sagas registered with AsSaga, runs their timers and compensations
// between start and stop, serves /sagas on the admin server and adds the
// "sagas" dashboard panel. With no saga registered it opens nothing and
// runs nothing.
var Module = fx.Module("martyfx.saga",
	fx.Provide(
		fxcore.ProvideConfig[Config]("saga", DefaultConfig),
		newRuntime,
	),
	fx.Invoke(startRuntime),
	fxhttp.AsAdminRoute("GET /sagas", newListRoute),
	fxhttp.AsAdminRoute("GET /sagas/{id}", newGetRoute),
	fxhttp.AsAdminRoute("POST /sagas/{id}/retry", func(r *Runtime) http.Handler { return newActionRoute(r, "retry") }),
	fxhttp.AsAdminRoute("POST /sagas/{id}/abort", func(r *Runtime) http.Handler { return newActionRoute(r, "abort") }),
	fxmonitor.AsPanel(newPanel),
	fxmonitor.AsAlertRule(newStuckAlertRule),
	fxrepo.AsOptionalMigrations("marty_saga", Migrations()),
)

type runtimeIn struct {
	fx.In
	Config         Config
	Sagas          []registration      `group:"martyfx.saga.sagas"`
	Upcasters      []fxevents.Upcaster `group:"martyfx.saga.upcasters"`
	Logger         *zap.Logger
	Registerer     prometheus.Registerer
	Codec          fxevents.Codec
	TracerProvider trace.TracerProvider `optional:"true"`
	Repo           fxrepo.OnDemand      `optional:"true"`
}

func newRuntime(in runtimeIn) (*Runtime, error) {
	opts := RuntimeOptions{
		Codec: in.Codec, Upcasters: in.Upcasters, Logger: in.Logger, TracerProvider: in.TracerProvider,
		Registerer: in.Registerer,
	}
	for _, s := range in.Sagas {
		// Checked before the database opens: a failed fx.New has no stop
		// hook to close it.
		if err := s.saga.definition().check(); err != nil {
			return nil, err
		}
		opts.Sagas = append(opts.Sagas, s.saga)
	}
	if len(opts.Sagas) > 0 {
		var err error
		if opts.DB, opts.UnitOfWork, err = in.Repo.Open(); err != nil {
			return nil, err
		}
	}
	r, err := NewRuntime(in.Config, opts)
	if err != nil {
		return nil, err
	}
	for _, s := range in.Sagas {
		r.tokens[s.tok] = s.saga.Name()
	}
	return r, nil
}

// startRuntime gives the runtime the bus (which needs the runtime's
// handlers first) and runs it after the bus starts, stopping it before.
func startRuntime(lc fx.Lifecycle, r *Runtime, bus fxevents.Bus) {
	r.UseBus(bus)
	lc.Append(fx.Hook{OnStart: r.Start, OnStop: r.Stop})
}

// newStuckAlertRule is the default alert: a saga has been stuck for five
// minutes (a timer or compensation ran out of attempts).
func newStuckAlertRule() fxmonitor.AlertRule {
	return fxmonitor.AlertRule{
		Name: "MartySagaStuck", Metric: "marty_saga_stuck_sagas", Op: fxmonitor.OpGreater,
		Threshold: 0, For: 5 * time.Minute, Severity: "warning",
		Summary:     "{{ $value }} saga(s) stuck",
		Description: "A saga's timer or compensation ran out of MARTY_SAGA_MAX_ATTEMPTS: see the Sagas panel or GET /sagas?stuck=1 on the admin server, fix the cause, then retry it (POST /sagas/{saga}:{key}/retry).",
	}
}
