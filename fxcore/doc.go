// Package fxcore is the floor every martyfx module stands on: the service's
// identity (ServiceInfo), typed configuration (Source, Load, ProvideConfig),
// the zap logger, the Prometheus registry, the app's stop sequence
// (Stopping), the TLS configuration every server and client shares (TLS),
// error classes (ErrorClass, Classify) and the registration engine behind
// every AsXxx helper (Group).
//
// # Configuration
//
// Each module's Config is loaded per section, later sources winning: the
// defaults in code, the section of the YAML file MARTY_CONFIG_FILE names,
// then the environment variables MARTY_<SECTION>_<FIELD> (nested fields
// joined with _, as in MARTY_GRPC_TLS_CERT_FILE; map[string]Struct fields
// take MARTY_GRPC_CLIENTS_<NAME>_TARGET). koanf merges (its file and env
// providers), mapstructure decodes. Errors name the variable, the value and
// what is allowed, and wrap a *FieldError. At start fxcore.Module warns
// about every file section and MARTY_* variable no module read, with the
// nearest known name; in production an unread variable that looks like a
// secret fails the start.
//
// # The module contract
//
// Every martyfx module reads alike; a new module keeps to these rules.
//
// Constructors without Fx. A part is built by
// NewXxx(cfg Config, opts XxxOptions) (*Xxx, error), or NewXxx(opts
// XxxOptions) when it has no Config of its own. The constructor calls
// cfg.Validate itself, so a user without Fx gets the error the Fx path
// gives. The options struct imports nothing from fx; its fields, when a part
// needs them, have these names and zero values:
//
//   - Logger *zap.Logger: nil is zap.NewNop().
//   - Info fxcore.ServiceInfo: the zero value is not production, the name
//     from the binary.
//   - Registerer prometheus.Registerer: nil registers no metrics.
//   - TracerProvider trace.TracerProvider: nil is otel.GetTracerProvider().
//   - Propagator propagation.TextMapPropagator: nil is
//     otel.GetTextMapPropagator().
//   - Stopping *fxcore.Stopping: nil is a private stop sequence.
//   - Fatal func(error): called when a background loop dies after Start; nil
//     only logs. module.go passes FatalFunc(shutdowner, logger, what).
//   - Classifiers []fxcore.Classifier.
//   - The module's registrations as slices named after their AsXxx helper:
//     Routes, Middleware, Services, Handlers, Checks ...
//
// The fx.In parameter structs are unexported and live in module.go, whose
// providers turn them into the options struct and call the public
// constructor. Lifecycle methods are Start(ctx) error and Stop(ctx) error
// (Close for a client-only part); Start never blocks, and its errors name
// the address.
//
// Registration. Users register with AsXxx(...) fx.Option helpers built on
// Group; the group tags are unexported constants of the owning package, and
// a module that contributes to another's group uses a helper that module
// exports. Ordering is a field Order int with one meaning everywhere
// (fxhttp middleware, fxgrpc interceptors, fxevents handler middleware):
// ascending, lower is outer. Order < 0 runs before the built-in request
// checks (authentication, validation) but inside tracing, metrics, logging
// and recovery; Order >= 0 runs after the built-in checks, around the
// handler.
//
// TLS. TLS is the only TLS type: every config with TLS has a field
// TLS fxcore.TLS `koanf:"tls"`, read from MARTY_<SECTION>_TLS_CERT_FILE,
// _KEY_FILE, _CA_FILE, _SERVER_NAME, _ENABLED and _INSECURE_SKIP_VERIFY.
//
// Errors. Errors are wrapped with %w and start with the package
// ("fxrepo: ..."); sentinel errors say their package too
// (errors.New("fxrepo: not found")) and are classified (ErrorClass) where a
// client may see them. No secret reaches a log or an error.
//
// Docs. Each package doc has a short "Without Fx" paragraph with a snippet
// that compiles, each module at least one runnable Example, and each
// package README its config table.
//
// # Without Fx
//
// A module's config loads from a Source built from any environment:
//
//	src, err := fxcore.NewSourceFrom("", os.Environ())
//	cfg, err := fxcore.Load(src, "orders", DefaultConfig()) // MARTY_ORDERS_*
//	log, err := fxcore.NewLogger(fxcore.DefaultLogConfig(), fxcore.ServiceInfo{Name: "orders"})
//
// # Start errors
//
// NewFxLogger routes Fx's events to zap and reports each failure once, root
// cause first. DescribeError tells an error from fx.New, Start or Stop the
// same way for a person; martyfx.Run and fxtest print it.
package fxcore
