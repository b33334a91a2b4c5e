package fxcore

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// ServiceInfo identifies the running service. Every module labels its
// telemetry with it.
type ServiceInfo struct {
	// Name from MARTY_SERVICE_NAME, else OTEL_SERVICE_NAME, else the binary's name.
	Name string
	// Version from MARTY_SERVICE_VERSION, else the main module's build info.
	Version string
	// Environment from MARTY_ENV (default development).
	Environment string
	// InstanceID is unique per process: host name and a random suffix.
	InstanceID string
}

// IsDevelopment reports a local environment (development, dev, local, test):
// the defaults favour a developer's box there (console logs, no exporter).
func (s ServiceInfo) IsDevelopment() bool {
	switch strings.ToLower(s.Environment) {
	case "development", "dev", "local", "test":
		return true
	}
	return false
}

// IsProduction reports environment production (or prod).
func (s ServiceInfo) IsProduction() bool {
	switch strings.ToLower(s.Environment) {
	case "production", "prod":
		return true
	}
	return false
}

// NewServiceInfo resolves the identity from the config and its fallbacks.
func NewServiceInfo(src *Source, core Config, svc ServiceConfig) ServiceInfo {
	info := ServiceInfo{Name: svc.Name, Version: svc.Version, Environment: core.Env}
	if info.Name == "" {
		if v, _ := src.Env("OTEL_SERVICE_NAME"); v != "" {
			info.Name = v
		}
	}
	if info.Name == "" {
		info.Name = binaryName()
	}
	if info.Version == "" {
		info.Version = buildVersion()
	}
	info.InstanceID = newInstanceID()
	return info
}

func binaryName() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		name := filepath.Base(os.Args[0])
		return strings.TrimSuffix(name, filepath.Ext(name))
	}
	return "service"
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return s.Value[:12]
			}
		}
	}
	return "dev"
}

func newInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}
