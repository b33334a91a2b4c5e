package fxcore

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger builds the app's *zap.Logger: level and format from LogConfig
// (console in development, JSON elsewhere by default), with the service's
// name, version and instance as fields on every entry.
func NewLogger(cfg LogConfig, info ServiceInfo) (*zap.Logger, error) {
	return newLogger(cfg, info, zapcore.Lock(os.Stderr))
}

func newLogger(cfg LogConfig, info ServiceInfo, out zapcore.WriteSyncer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("fxcore: invalid MARTY_LOG_LEVEL=%q: %w", cfg.Level, err)
	}
	format := cfg.Format
	if format == "" {
		format = "json"
		if info.IsDevelopment() {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	if format == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.TimeKey = "ts"
		ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := zapcore.NewCore(enc, out, level)
	return zap.New(core, zap.AddCaller(), zap.ErrorOutput(out)).With(
		zap.String("service", info.Name),
		zap.String("version", info.Version),
		zap.String("instance", info.InstanceID),
	), nil
}
