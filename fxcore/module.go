package fxcore

import (
	"context"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Module provides the service identity, the config Source, the logger, the
// Prometheus registry (as prometheus.Registerer and prometheus.Gatherer) and
// the app's stop sequence and start gate (*Stopping).
var Module = fx.Module("martyfx.core",
	fx.Provide(
		NewSource,
		ProvideConfig[Config]("", DefaultConfig),
		ProvideConfig[ServiceConfig]("service", func() ServiceConfig { return ServiceConfig{} }),
		ProvideConfig[LogConfig]("log", DefaultLogConfig),
		NewServiceInfo,
		NewLogger,
		NewRegistry,
		func(r *prometheus.Registry) prometheus.Registerer { return r },
		func(r *prometheus.Registry) prometheus.Gatherer { return r },
		newStopping,
	),
	fx.Invoke(reportUnread, syncLogger),
)

// ProvideConfig returns a constructor of T that loads the section from the
// Source over the defaults and validates it. Modules use it in fx.Provide:
//
//	fx.Provide(fxcore.ProvideConfig[Config]("grpc", DefaultConfig))
func ProvideConfig[T Validator](section string, defaults func() T) func(*Source) (T, error) {
	return func(src *Source) (T, error) {
		return Load(src, section, defaults())
	}
}

// reportUnread warns at start about config file sections and MARTY_*
// variables no module read: a typo, or a module missing from the app. By
// then every module's config is loaded (fx.New ran the constructors). In
// production a variable that looks like a secret's fails the start
// (checkEnv).
func reportUnread(lc fx.Lifecycle, src *Source, info ServiceInfo, log *zap.Logger) {
	lc.Append(fx.StartHook(func() error {
		if unused := src.UnusedSections(); len(unused) > 0 {
			log.Warn("config file has sections no module read",
				zap.String("file", src.File()), zap.String("sections", strings.Join(unused, ", ")))
		}
		return checkEnv(src, info, log)
	}))
}

func syncLogger(lc fx.Lifecycle, log *zap.Logger) {
	lc.Append(fx.StopHook(func(context.Context) { _ = log.Sync() }))
}

// ShutdownOnError is for background loops that must not die silently: it
// logs err and asks the app to stop with exit code 1.
func ShutdownOnError(sd fx.Shutdowner, log *zap.Logger, what string, err error) {
	log.Error(what+" failed; shutting down", zap.Error(err))
	_ = sd.Shutdown(fx.ExitCode(1))
}

// FatalFunc returns the Fatal callback of a module's options (the field
// every XxxOptions has for a background loop that died after Start): it
// logs the error with what failed and stops the app with exit code 1. With
// a nil Shutdowner it only logs.
func FatalFunc(sd fx.Shutdowner, log *zap.Logger, what string) func(error) {
	if log == nil {
		log = zap.NewNop()
	}
	return func(err error) {
		if sd == nil {
			log.Error(what+" failed", zap.Error(err))
			return
		}
		ShutdownOnError(sd, log, what, err)
	}
}
