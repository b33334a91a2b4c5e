package kafka_test

import (
	"context"
	"crypto/tls"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/kafka"
	"github.com/martyfx/martyfx/internal/nettest"
	"github.com/martyfx/martyfx/internal/pkitest"
)

// fxOptions are an app's options for fx.New, to look at build and start
// errors the harness would turn into a failed test.
func fxOptions(t *testing.T, env []string, opts ...fx.Option) []fx.Option {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_SERVICE_NAME=orders", "MARTY_LOG_LEVEL=error"}, env...))
	require.NoError(t, err)
	return append([]fx.Option{fx.NopLogger, fxcore.Module, fxevents.Module, kafka.Module, fx.Replace(src)}, opts...)
}

func TestBadConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"MARTY_KAFKA_BROKERS="}, `MARTY_KAFKA_BROKERS=""`},
		{[]string{"MARTY_KAFKA_BROKERS=kafka-1"}, `MARTY_KAFKA_BROKERS="kafka-1": want host:port`},
		{[]string{"MARTY_KAFKA_SASL_MECHANISM=gssapi"}, `MARTY_KAFKA_SASL_MECHANISM="gssapi": want one of`},
		{[]string{"MARTY_KAFKA_SASL_MECHANISM=plain"}, `MARTY_KAFKA_SASL_USERNAME`},
		{[]string{"MARTY_KAFKA_PARTITIONS=0"}, `MARTY_KAFKA_PARTITIONS=0: want a positive integer`},
		{[]string{"MARTY_KAFKA_REPLICATION_FACTOR=0"}, `MARTY_KAFKA_REPLICATION_FACTOR=0`},
		{[]string{"MARTY_KAFKA_TOPIC_PREFIX=events/x"}, `MARTY_KAFKA_TOPIC_PREFIX="events/x"`},
		{[]string{"MARTY_KAFKA_BACKOFF=1s,soon"}, `MARTY_KAFKA_BACKOFF`},
		{[]string{"MARTY_KAFKA_PUBLISH_TIMEOUT=-1s"}, `MARTY_KAFKA_PUBLISH_TIMEOUT="-1s": want a positive duration`},
		{[]string{"MARTY_KAFKA_TLS_CERT_FILE=/tmp/c.pem"}, `MARTY_KAFKA_TLS_KEY_FILE`},
		{[]string{"MARTY_KAFKA_MAX_DELIVERIES=9", "MARTY_EVENTS_MAX_ATTEMPTS=5"}, `MARTY_KAFKA_MAX_DELIVERIES=9 is more than MARTY_EVENTS_MAX_ATTEMPTS=5`},
	}
	for _, c := range cases {
		t.Run(c.env[0], func(t *testing.T) {
			err := fx.New(fxOptions(t, c.env, recordingHandler("mailer", newReceived()))...).Err()
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

func startErr(t *testing.T, env []string, opts ...fx.Option) error {
	t.Helper()
	app := fx.New(fxOptions(t, env, opts...)...)
	require.NoError(t, app.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := app.Start(ctx)
	if err == nil {
		require.NoError(t, app.Stop(ctx))
		return nil
	}
	_ = app.Stop(ctx)
	return err
}

func TestUnreachableBrokersFailStartWithTheAddress(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + strconv.Itoa(nettest.FreePort(t))
	err := startErr(t, []string{"MARTY_KAFKA_BROKERS=" + addr, "MARTY_KAFKA_DIAL_TIMEOUT=500ms"})
	require.ErrorContains(t, err, "kafka: connect to "+addr)
}

// With MARTY_KAFKA_CREATE_TOPICS=false a missing topic fails the start
// naming it; a user the cluster does not let create topics gets the same
// clear answer; an existing topic is used as it is.
func TestTopicsAreCheckedWhenTheyMayNotBeCreated(t *testing.T) {
	t.Parallel()
	t.Run("create_topics=false", func(t *testing.T) {
		c := newCluster(t)
		prefix := "t" + randHex(4)
		err := startErr(t, c.env(prefix, "MARTY_KAFKA_CREATE_TOPICS=false"), recordingHandler("mailer", newReceived()))
		require.ErrorContains(t, err, "kafka: topics "+prefix+".orders.placed")
		require.ErrorContains(t, err, "MARTY_KAFKA_CREATE_TOPICS=false")

		adm := c.client(t)
		for _, topic := range []string{prefix + ".orders.placed", prefix + ".deadletter.orders_mailer"} {
			req := kmsg.NewPtrCreateTopicsRequest()
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 2, 1
			req.Topics = append(req.Topics, rt)
			_, err := req.RequestWith(context.Background(), adm)
			require.NoError(t, err)
		}
		require.NoError(t, startErr(t, c.env(prefix, "MARTY_KAFKA_CREATE_TOPICS=false"), recordingHandler("mailer", newReceived())))
	})
	t.Run("not allowed to create", func(t *testing.T) {
		c := newCluster(t, kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser("PLAIN", "admin", "admin"),
			kfake.User("PLAIN", "app", "app-secret",
				kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "*", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationAll, Allow: true},
				kfake.ACL{Resource: kmsg.ACLResourceTypeCluster, Name: "kafka-cluster", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationCreate, Allow: false},
				kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "*", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationCreate, Allow: false},
			))
		prefix := "t" + randHex(4)
		err := startErr(t, c.env(prefix, "MARTY_KAFKA_SASL_MECHANISM=plain", "MARTY_KAFKA_SASL_USERNAME=app", "MARTY_KAFKA_SASL_PASSWORD=app-secret"),
			recordingHandler("mailer", newReceived()))
		require.ErrorContains(t, err, "this user may not create it")
		require.NotContains(t, err.Error(), "app-secret")
	})
}

// SASL PLAIN and SCRAM from MARTY_KAFKA_SASL_*: the right password
// connects and events flow; a wrong one fails the start without the
// password in the error.
func TestSASLFromTheEnvironment(t *testing.T) {
	t.Parallel()
	for _, mech := range []struct{ env, kfake string }{
		{"plain", "PLAIN"}, {"scram-sha-256", "SCRAM-SHA-256"}, {"SCRAM-SHA-512", "SCRAM-SHA-512"},
	} {
		t.Run(mech.env, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, kfake.EnableSASL(), kfake.Superuser(mech.kfake, "svc", "s3cret-pw"))
			prefix := "t" + randHex(4)
			env := c.env(prefix, "MARTY_KAFKA_SASL_MECHANISM="+mech.env, "MARTY_KAFKA_SASL_USERNAME=svc")
			got := newReceived()
			ta := newApp(t, "notifier", append(env, "MARTY_KAFKA_SASL_PASSWORD=s3cret-pw"), recordingHandler("mailer", got))
			require.NoError(t, ta.bus.Publish(context.Background(), OrderPlaced{OrderID: "o1"}))
			eventually(t, func() bool { return got.distinct() == 1 }, "an event goes round with SASL %s", mech.env)

			err := startErr(t, append(env, "MARTY_KAFKA_SASL_PASSWORD=wrong-pw", "MARTY_KAFKA_DIAL_TIMEOUT=2s"))
			require.ErrorContains(t, err, "kafka: connect to "+c.brokers())
			require.NotContains(t, err.Error(), "wrong-pw")
		})
	}
}

// TLS from MARTY_KAFKA_TLS_*: with the CA the app connects and events
// flow; without it the start fails naming the brokers.
func TestTLSFromTheEnvironment(t *testing.T) {
	t.Parallel()
	pki := pkitest.New(t)
	c := newCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.ServerPair}, MinVersion: tls.VersionTLS12}))
	prefix := "t" + randHex(4)
	got := newReceived()
	ta := newApp(t, "notifier", c.env(prefix, "MARTY_KAFKA_TLS_CA_FILE="+pki.CA), recordingHandler("mailer", got))
	require.NoError(t, ta.bus.Publish(context.Background(), OrderPlaced{OrderID: "o1"}))
	eventually(t, func() bool { return got.distinct() == 1 }, "an event goes round over TLS")

	err := startErr(t, c.env(prefix, "MARTY_KAFKA_TLS_ENABLED=true", "MARTY_KAFKA_DIAL_TIMEOUT=2s"))
	require.ErrorContains(t, err, "kafka: connect to "+c.brokers())
}

// The readiness check "kafka" is non-critical with the outbox bus and
// critical with the memory bus; it fails once the cluster has been
// unreachable for the grace period and recovers with it.
func TestHealthCheckFollowsTheClusterAndTheBus(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ta := newApp(t, "orders", c.env("t"+randHex(4), "MARTY_KAFKA_READINESS_GRACE=0s", "MARTY_KAFKA_DIAL_TIMEOUT=500ms"))
	check := ta.check(t, "kafka")
	require.True(t, check.Critical, "the memory bus publishes to Kafka directly")
	ctx := context.Background()
	require.NoError(t, check.Func(ctx))
	require.Equal(t, 1.0, metric(t, ta.reg, "marty_kafka_up", nil))
	restore := c.outage(t)
	c.refused.Add(1) // no produce needed: the check's pings meet the outage
	eventually(t, func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return check.Func(cctx) != nil
	}, "the check fails while the cluster is away")
	require.Equal(t, 0.0, metric(t, ta.reg, "marty_kafka_up", nil))
	restore()
	eventually(t, func() bool { return check.Func(ctx) == nil }, "the check recovers")

	outbox := newApp(t, "orders", append(c.env("t"+randHex(4)), "MARTY_EVENTS_BUS=outbox",
		"MARTY_DB_DSN=file:"+t.TempDir()+"/o.db"), fxrepoModule())
	require.False(t, outbox.check(t, "kafka").Critical, "the outbox absorbs an outage")
}
