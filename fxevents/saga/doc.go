// Package saga runs durable process managers (sagas) in the service's own
// database, beside fxevents' transactional outbox and inbox: no cluster,
// no new infrastructure.
//
// A saga is a typed state struct and steps that react to events, correlated
// by a key taken from the event:
//
//	type OrderState struct{ Amount int64; Reserved bool }
//
//	orders := saga.New[OrderState]("order")
//	saga.Start(orders, func(e OrderCreated) string { return e.OrderID },
//		func(s *saga.Step[OrderState], e OrderCreated) error {
//			s.State.Amount = e.Amount
//			if err := s.Schedule("payment-deadline", 15*time.Minute); err != nil {
//				return err
//			}
//			return s.Emit(ReservePayment{OrderID: e.OrderID, Amount: e.Amount})
//		})
//	saga.On(orders, func(e PaymentReserved) string { return e.OrderID },
//		func(s *saga.Step[OrderState], e PaymentReserved) error {
//			s.State.Reserved = true
//			if err := s.AddCompensation("release"); err != nil {
//				return err
//			}
//			s.Complete()
//			return s.Emit(ConfirmOrder{OrderID: e.OrderID})
//		})
//	orders.OnTimer("payment-deadline", func(s *saga.Step[OrderState]) error {
//		s.Fail("not paid in time")
//		return s.Emit(CancelOrder{OrderID: s.Key()})
//	})
//	orders.Compensation("release", func(s *saga.Step[OrderState]) error {
//		return s.Emit(ReleasePayment{OrderID: s.Key()})
//	})
//
//	fx.New(martyfx.Modules..., saga.Module, saga.AsSaga(orders))
//
// Guarantees:
//
//   - A step runs with the saga's row locked (SELECT ... FOR UPDATE on
//     Postgres; SQLite has one writer), so a saga takes one step at a time
//     across every replica while different sagas run in parallel.
//   - The step's new state, the events it emits (Step.Emit, through the
//     outbox), its timers and the inbox mark of the event that triggered it
//     commit in one transaction: each event takes effect once, whatever
//     crashes; a step that returns an error is retried by fxevents, then
//     dead-lettered.
//   - Timers (Step.Schedule) are rows in marty_saga_timer, fired by the
//     runtime's loop: a due timer is claimed by locking its saga (SKIP
//     LOCKED), run and deleted in the step's transaction, so it fires once
//     across replicas and after any restart, including when every replica
//     was down at its due time.
//   - Compensations (Step.AddCompensation, run after Step.Fail) run newest
//     first, each in its own transaction that also removes it: each runs
//     once. A timer or compensation that keeps failing is retried with
//     backoff and then leaves the saga stuck, shown on the dashboard, until
//     Runtime.Retry (POST /sagas/{saga}:{key}/retry on the admin server).
//   - Events carry a schema version (fxevents.Versioned); upcasters
//     registered with AsUpcaster turn an older payload into the current one
//     before a step decodes it. The state has its own schema version
//     (Definition.StateVersion) with an upgrade function.
//
// Each step has a span (a child of the event's consumer span, or, for a
// timer, linked to the step that set it) and the marty_saga_* metrics
// count sagas started, completed, failed, compensated, stuck, and time the
// steps; Runtime.Get, List and History answer from code.
package saga
