package deploy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/martyfx/martyfx/example/orders/service"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxtest"
)

// Just the parts of the Kubernetes objects the test reads.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		// Deployment
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds *int64      `yaml:"terminationGracePeriodSeconds"`
				Containers                    []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		// Deployment: {matchLabels: ...}; Service: the labels themselves.
		Selector map[string]any `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type container struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name     string `yaml:"name"`
				Key      string `yaml:"key"`
				Optional bool   `yaml:"optional"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
	GRPC *struct {
		Port    int    `yaml:"port"`
		Service string `yaml:"service"`
	} `yaml:"grpc"`
}

func manifestText(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("kubernetes", file))
	require.NoError(t, err)
	return string(b)
}

func load(t *testing.T, file string) []object {
	t.Helper()
	b := []byte(manifestText(t, file))
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(false)
	var objs []object
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, file)
		objs = append(objs, o)
	}
	return objs
}

func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("no %s %q", kind, name)
	return object{}
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err, addr)
	n, err := strconv.Atoi(p)
	require.NoError(t, err, addr)
	return n
}

func env(c container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// The ports and the stop timeout the container runs with: the config
// defaults, unless the manifest sets the variable.
type settings struct {
	http, admin, grpc int
	stop              time.Duration
}

func effective(t *testing.T, c container) settings {
	t.Helper()
	h, g, core := fxhttp.DefaultConfig(), fxgrpc.DefaultConfig(), fxcore.DefaultConfig()
	s := settings{http: port(t, h.Addr), admin: port(t, h.AdminAddr), grpc: port(t, g.Addr), stop: core.StopTimeout}
	if v, ok := env(c, "MARTY_HTTP_ADDR"); ok {
		s.http = port(t, v)
	}
	if v, ok := env(c, "MARTY_HTTP_ADMIN_ADDR"); ok {
		s.admin = port(t, v)
	}
	if v, ok := env(c, "MARTY_GRPC_ADDR"); ok {
		s.grpc = port(t, v)
	}
	if v, ok := env(c, "MARTY_STOP_TIMEOUT"); ok {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "MARTY_STOP_TIMEOUT")
		s.stop = d
	}
	return s
}

// AdminProbePaths are the admin routes fxmonitor serves; TestProbePathsServed
// checks them against a running app.
var AdminProbePaths = map[string]bool{"/startupz": true, "/livez": true, "/readyz": true}

func checkDeployment(t *testing.T, file, name string, wantGRPC bool) {
	objs := load(t, file)
	d := find(t, objs, "Deployment", name)
	require.Equal(t, "apps/v1", d.APIVersion)
	require.Len(t, d.Spec.Template.Spec.Containers, 1)
	c := d.Spec.Template.Spec.Containers[0]
	s := effective(t, c)

	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	require.Equal(t, s.http, ports["http"], "containerPort http vs fxhttp Addr")
	require.Equal(t, s.admin, ports["admin"], "containerPort admin vs fxhttp AdminAddr")
	if wantGRPC {
		require.Equal(t, s.grpc, ports["grpc"], "containerPort grpc vs fxgrpc Addr")
	}

	// Probes: HTTP ones on the admin port and a known path; the gRPC one on
	// the gRPC port.
	for what, p := range map[string]*probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		require.NotNil(t, p, "%s probe", what)
		switch {
		case p.HTTPGet != nil:
			require.True(t, AdminProbePaths[p.HTTPGet.Path], "%s probe path %q", what, p.HTTPGet.Path)
			switch v := p.HTTPGet.Port.(type) {
			case string:
				require.Equal(t, s.admin, ports[v], "%s probe port %q", what, v)
			case int:
				require.Equal(t, s.admin, v, "%s probe port", what)
			default:
				t.Fatalf("%s probe port %v", what, v)
			}
		case p.GRPC != nil:
			require.Equal(t, "readiness", what, "only readiness goes through gRPC health")
			require.Equal(t, s.grpc, p.GRPC.Port, "grpc probe port vs fxgrpc Addr")
			require.Empty(t, p.GRPC.Service, "the overall health entry \"\" follows readiness")
		default:
			t.Fatalf("%s probe has neither httpGet nor grpc", what)
		}
	}
	require.Equal(t, "/startupz", c.StartupProbe.HTTPGet.Path)
	require.Equal(t, "/livez", c.LivenessProbe.HTTPGet.Path)
	if wantGRPC {
		require.NotNil(t, c.ReadinessProbe.GRPC, "orders readiness uses the native grpc probe")
	}

	// The grace period covers the app's own bounded stop, with a small margin.
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	require.NotNil(t, grace, "terminationGracePeriodSeconds")
	g := time.Duration(*grace) * time.Second
	require.GreaterOrEqual(t, g, s.stop, "grace period must not cut the stop timeout short")
	require.LessOrEqual(t, g, s.stop+10*time.Second, "grace period should match the stop timeout")

	// The admin token comes from a Secret, never from the manifest; it is
	// optional: without it production serves only the open admin routes.
	var tokenRef bool
	for _, e := range c.Env {
		if e.Name != "MARTY_HTTP_ADMIN_TOKEN" {
			continue
		}
		require.False(t, tokenRef, "MARTY_HTTP_ADMIN_TOKEN set twice")
		tokenRef = true
		require.Empty(t, e.Value, "MARTY_HTTP_ADMIN_TOKEN must not be written in the manifest")
		require.NotNil(t, e.ValueFrom, "MARTY_HTTP_ADMIN_TOKEN valueFrom")
		ref := e.ValueFrom.SecretKeyRef
		require.NotNil(t, ref, "MARTY_HTTP_ADMIN_TOKEN valueFrom.secretKeyRef")
		require.Equal(t, name+"-admin", ref.Name)
		require.Equal(t, "token", ref.Key)
		require.True(t, ref.Optional, "the pod starts without the Secret (protected admin routes off)")
	}
	require.True(t, tokenRef, "MARTY_HTTP_ADMIN_TOKEN from a Secret")
	mode, _ := env(c, "MARTY_ENV")
	require.Equal(t, "production", mode)
	require.Contains(t, manifestText(t, file), "kubectl create secret generic "+name+"-admin",
		"the manifest says how to create the admin token's Secret")

	require.NotEmpty(t, c.Resources.Requests["cpu"])
	require.NotEmpty(t, c.Resources.Requests["memory"])
	require.NotEmpty(t, c.Resources.Limits["memory"])

	ann := d.Spec.Template.Metadata.Annotations
	require.Equal(t, "true", ann["prometheus.io/scrape"])
	require.Equal(t, strconv.Itoa(s.admin), ann["prometheus.io/port"])
	require.Equal(t, "/metrics", ann["prometheus.io/path"])

	labels := d.Spec.Template.Metadata.Labels
	match, ok := d.Spec.Selector["matchLabels"].(map[string]any)
	require.True(t, ok, "deployment selector.matchLabels")
	for k, v := range match {
		require.Equal(t, v, labels[k], "deployment selector %s", k)
	}
	svc := find(t, objs, "Service", name)
	require.NotEmpty(t, svc.Spec.Selector)
	for k, v := range svc.Spec.Selector {
		require.Equal(t, v, labels[k], "service selector %s", k)
	}
	for _, p := range svc.Spec.Ports {
		_, ok := ports[p.TargetPort]
		require.True(t, ok, "service port %s targets unknown container port %q", p.Name, p.TargetPort)
		require.Equal(t, ports[p.TargetPort], p.Port, "service port %s", p.Name)
	}
}

func TestOrdersManifest(t *testing.T) { checkDeployment(t, "orders.yaml", "orders", true) }

func TestNotifierManifest(t *testing.T) { checkDeployment(t, "notifier.yaml", "notifier", false) }

func TestPaymentManifest(t *testing.T) { checkDeployment(t, "payment.yaml", "payment", false) }

// protectedAdminPaths are admin routes the orders app serves that show
// payloads, status detail or change state.
var protectedAdminPaths = [][2]string{
	{http.MethodGet, "/statusz"},
	{http.MethodGet, "/events/dead"},
	{http.MethodPost, "/events/dead/retry"},
	{http.MethodGet, "/grpc/services"},
	{http.MethodGet, "/dashboard/"},
	{http.MethodGet, "/alerts"},
	{http.MethodGet, "/sagas"},
}

// The probe paths and the metrics path of the manifests are served by a
// running orders app's admin server in the manifests' environment
// (production) with no token, with no credentials; the protected admin
// routes are not.
func TestProbePathsServed(t *testing.T) {
	objs := load(t, "orders.yaml")
	envName, ok := env(find(t, objs, "Deployment", "orders").Spec.Template.Spec.Containers[0], "MARTY_ENV")
	require.True(t, ok)
	bus, ok := env(find(t, objs, "Deployment", "orders").Spec.Template.Spec.Containers[0], "MARTY_EVENTS_BUS")
	require.True(t, ok)
	app := fxtest.New(t, service.Module, service.SagaModule, fxtest.Env("MARTY_ENV="+envName, "MARTY_EVENTS_BUS="+bus))
	for path := range AdminProbePaths {
		require.Equal(t, http.StatusOK, app.Admin().Get(path, nil), path)
	}
	var metrics string
	require.Equal(t, http.StatusOK, app.Admin().Get("/metrics", &metrics))
	require.Contains(t, metrics, service.MetricOrders)
	for _, p := range protectedAdminPaths {
		require.Equal(t, http.StatusNotFound, app.Admin().Do(p[0], p[1], nil, nil), "%s %s without the Secret", p[0], p[1])
	}
}

// With the Secret, the protected admin routes answer the token's bearer
// and no one else; the probes still need nothing.
func TestAdminTokenFromTheSecret(t *testing.T) {
	const token = "deploy-test-admin-token"
	app := fxtest.New(t, service.Module, service.SagaModule,
		fxtest.Env("MARTY_ENV=production", "MARTY_EVENTS_BUS=outbox", "MARTY_HTTP_ADMIN_TOKEN="+token))
	for path := range AdminProbePaths {
		require.Equal(t, http.StatusOK, app.Admin().Get(path, nil), path)
	}
	require.Equal(t, http.StatusOK, app.Admin().Get("/metrics", nil))
	for _, p := range protectedAdminPaths {
		req, err := http.NewRequest(p[0], app.Admin().URL(p[1]), nil)
		require.NoError(t, err)
		resp, _ := app.Admin().Send(req) //nolint:bodyclose // Send reads and closes the body
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s without the token", p[0], p[1])
		req, err = http.NewRequest(p[0], app.Admin().URL(p[1]), nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, _ = app.Admin().Send(req) //nolint:bodyclose // Send reads and closes the body
		require.Less(t, resp.StatusCode, 300, "%s %s with the token", p[0], p[1])
	}
}
