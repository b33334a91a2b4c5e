package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/saga"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// The three events of the benchmarked saga and the command each step emits.
type sagaStep1 struct {
	ID string `json:"id"`
}

func (sagaStep1) EventType() string     { return "bench.saga_step1" }
func (e sagaStep1) AggregateID() string { return e.ID }

type sagaStep2 struct {
	ID string `json:"id"`
}

func (sagaStep2) EventType() string     { return "bench.saga_step2" }
func (e sagaStep2) AggregateID() string { return e.ID }

type sagaStep3 struct {
	ID string `json:"id"`
}

func (sagaStep3) EventType() string     { return "bench.saga_step3" }
func (e sagaStep3) AggregateID() string { return e.ID }

type sagaCommand struct {
	ID   string `json:"id"`
	Step int    `json:"step"`
}

func (sagaCommand) EventType() string     { return "bench.saga_command" }
func (e sagaCommand) AggregateID() string { return e.ID }

type benchSagaState struct {
	Steps  int   `json:"steps"`
	Amount int64 `json:"amount"`
}

func benchSaga() *saga.Definition[benchSagaState] {
	d := saga.New[benchSagaState]("bench")
	step := func(s *saga.Step[benchSagaState], n int) error {
		s.State.Steps++
		s.State.Amount += int64(n)
		if n == 3 {
			s.Complete()
		}
		return s.Emit(sagaCommand{ID: s.Key(), Step: n})
	}
	saga.Start(d, func(e sagaStep1) string { return e.ID }, func(s *saga.Step[benchSagaState], _ sagaStep1) error { return step(s, 1) })
	saga.On(d, func(e sagaStep2) string { return e.ID }, func(s *saga.Step[benchSagaState], _ sagaStep2) error { return step(s, 2) })
	saga.On(d, func(e sagaStep3) string { return e.ID }, func(s *saga.Step[benchSagaState], _ sagaStep3) error { return step(s, 3) })
	return d
}

// baselineHandler is the hand-written equivalent of one saga step: in one
// transaction the inbox mark, the state row locked, updated (created by
// the first step), and the command inserted into the outbox.
type baselineHandler struct {
	db  *gorm.DB
	bus *fxevents.OutboxBus
}

func (baselineHandler) Name() string { return "baseline" }
func (baselineHandler) EventTypes() []string {
	return []string{sagaStep1{}.EventType(), sagaStep2{}.EventType(), sagaStep3{}.EventType()}
}

func (h baselineHandler) Handle(ctx context.Context, env fxevents.Envelope) error {
	db := fxrepo.DB(ctx, h.db)
	step := map[string]int{"bench.saga_step1": 1, "bench.saga_step2": 2, "bench.saga_step3": 3}[env.Type]
	id := env.AggregateID
	if step == 1 {
		if err := db.Exec("INSERT INTO bench_state (id, steps, amount) VALUES (?, 0, 0) ON CONFLICT DO NOTHING", id).Error; err != nil {
			return err
		}
	}
	var st struct{ Steps, Amount int64 }
	if err := db.Raw("SELECT steps, amount FROM bench_state WHERE id = ? FOR UPDATE", id).Scan(&st).Error; err != nil {
		return err
	}
	if err := db.Exec("UPDATE bench_state SET steps = ?, amount = ? WHERE id = ?", st.Steps+1, st.Amount+int64(step), id).Error; err != nil {
		return err
	}
	return h.bus.Publish(ctx, sagaCommand{ID: id, Step: step})
}

// BenchmarkSaga completes three-step sagas on Postgres, each step one
// event handled through the dispatcher (as the relay or a transport would
// hand it over) by 8 concurrent callers, with the relay off: what is
// measured is the step transaction. "martyfx" runs saga.Runtime (inbox
// mark, row lock, JSON state, history row, outbox insert); "baseline" is
// the hand-written handler doing the inbox mark, a locked state update and
// the outbox insert, in the same run. MARTY_TEST_POSTGRES_DSN; a fresh
// database per sub-benchmark. "sync-commit" waits for the WAL flush at
// each commit (the default: fsync-bound on a shared disk); "async-commit"
// sets synchronous_commit off on the database for both, which measures the
// CPU each step costs.
func BenchmarkSaga(b *testing.B) {
	const sagas, callers = 2000, 8
	for _, commit := range []string{"sync", "async"} {
		for _, kind := range []string{"baseline", "martyfx"} {
			b.Run(commit+"-commit/"+kind, func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					dsn := pgtest.NewDatabase(b)
					if commit == "async" { // CPU-bound: commits do not wait for the WAL flush
						asyncCommit(b, dsn)
					}
					// As many idle connections as open ones: with fxrepo's
					// default of 5 the pool closes connections the 8
					// callers need again, and each new one is a new
					// Postgres backend process.
					env := []string{"MARTY_EVENTS_RELAY=false", "MARTY_DB_MAX_OPEN_CONNS=16", "MARTY_DB_MAX_IDLE_CONNS=16"}
					var disp *fxevents.Dispatcher
					var opts []fx.Option
					handler := "baseline"
					if kind == "martyfx" {
						handler = "saga.bench"
						opts = append(opts, saga.Module, saga.AsSaga(benchSaga()))
					} else {
						opts = append(opts, fxevents.AsHandler(func(db *gorm.DB) fxevents.Handler {
							return fxevents.Idempotent(&lazyBaseline{db: db})
						}), fx.Invoke(func(bus fxevents.Bus) { baselineBus.Store(bus.(*fxevents.OutboxBus)) }))
					}
					opts = append(opts, fx.Populate(&disp))
					app, _, _, db := outboxApp(b, dsn, env, opts...)
					if err := db.Exec("CREATE TABLE bench_state (id TEXT PRIMARY KEY, steps BIGINT NOT NULL, amount BIGINT NOT NULL)").Error; err != nil {
						b.Fatal(err)
					}
					// Envelopes built up front: the benchmark times their handling.
					envs := make([][3]fxevents.Envelope, sagas)
					for i := range envs {
						id := fmt.Sprintf("saga-%06d", i)
						for s, ev := range []fxevents.Event{sagaStep1{id}, sagaStep2{id}, sagaStep3{id}} {
							e, err := fxevents.NewEnvelope("bench", ev, fxevents.DefaultCodec())
							if err != nil {
								b.Fatal(err)
							}
							envs[i][s] = e
						}
					}
					var stmts atomic.Int64
					countStatements(b, db, &stmts)
					dbName := databaseName(b, dsn)
					pg0, pgOK := pgBackendCPU(dbName)
					go0 := processCPU()
					var next atomic.Int64
					var failed atomic.Value
					var wg sync.WaitGroup
					b.StartTimer()
					start := time.Now()
					for range callers {
						wg.Go(func() {
							for {
								i := int(next.Add(1)) - 1
								if i >= sagas {
									return
								}
								for _, e := range envs[i] {
									if err := disp.Run(context.Background(), handler, e); err != nil {
										failed.Store(err)
										return
									}
								}
							}
						})
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					goCPU := processCPU() - go0
					pg1, pgOK1 := pgBackendCPU(dbName)
					statements := stmts.Load()
					if err, _ := failed.Load().(error); err != nil {
						b.Fatal(err)
					}
					var n int64
					if err := db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&n).Error; err != nil || n != 3*sagas {
						b.Fatalf("outbox rows: %d (want %d): %v", n, 3*sagas, err)
					}
					b.ReportMetric(sagas/elapsed.Seconds(), "sagas/s")
					// Statements the handler sent per saga, besides each
					// step's BEGIN and COMMIT (6 per saga on both sides).
					b.ReportMetric(float64(statements)/sagas, "stmts/saga")
					// CPU per saga, this process's and its Postgres
					// backends': what 2 cores would do with nothing else
					// on them (WAL writer and fsync excluded), which a
					// loaded machine's wall clock does not show.
					b.ReportMetric(float64(goCPU.Microseconds())/sagas, "go-cpu-µs/saga")
					if pgOK && pgOK1 {
						cpu := goCPU + pg1 - pg0
						b.ReportMetric(float64((pg1-pg0).Microseconds())/sagas, "pg-cpu-µs/saga")
						b.ReportMetric(2*sagas/cpu.Seconds(), "sagas/s/2cores")
					}
					stopApp(b, app)
				}
			})
		}
	}
}

// asyncCommit sets synchronous_commit off for the database's new sessions.
func asyncCommit(b *testing.B, dsn string) {
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(context.Background(), "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database()); END $$"); err != nil {
		b.Fatal(err)
	}
}

// baselineBus is the outbox bus the baseline handler publishes to (a
// handler cannot take the bus in its constructor: the bus needs the
// handlers).
var baselineBus atomic.Pointer[fxevents.OutboxBus]

type lazyBaseline struct{ db *gorm.DB }

func (*lazyBaseline) Name() string { return "baseline" }
func (*lazyBaseline) EventTypes() []string {
	return baselineHandler{}.EventTypes()
}
func (l *lazyBaseline) Handle(ctx context.Context, env fxevents.Envelope) error {
	return baselineHandler{db: l.db, bus: baselineBus.Load()}.Handle(ctx, env)
}

// countStatements counts the statements GORM sends on db (every callback
// chain: the inbox, the saga's and the baseline's SQL, the outbox insert),
// which leaves out only BEGIN and COMMIT.
func countStatements(b *testing.B, db *gorm.DB, n *atomic.Int64) {
	count := func(*gorm.DB) { n.Add(1) }
	cb := db.Callback()
	for _, err := range []error{
		cb.Create().Register("bench:count", count), cb.Query().Register("bench:count", count),
		cb.Update().Register("bench:count", count), cb.Delete().Register("bench:count", count),
		cb.Row().Register("bench:count", count), cb.Raw().Register("bench:count", count),
	} {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// databaseName is the database a DSN names.
func databaseName(b *testing.B, dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// processCPU is this process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pgBackendCPU sums the user and system CPU time of the local Postgres
// backends connected to database name (their process title names it), from
// /proc; false when there is none to read (Postgres on another host).
func pgBackendCPU(name string) (time.Duration, bool) {
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return 0, false
	}
	var ticks int64
	found := false
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(cmd, []byte("postgres: ")) || !bytes.Contains(cmd, []byte(" "+name+" ")) {
			continue
		}
		stat, err := os.ReadFile(strings.TrimSuffix(p, "cmdline") + "stat")
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: state is the
		// first, utime and stime the 12th and 13th.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		ticks += ut + st
		found = true
	}
	return time.Duration(ticks) * (time.Second / 100), found // USER_HZ is 100 on Linux
}
