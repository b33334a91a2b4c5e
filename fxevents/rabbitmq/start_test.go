package rabbitmq_test

import (
	"context"
	"net"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents/rabbitmq"
)

func TestBadConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"MARTY_RABBITMQ_URL=http://127.0.0.1:5672"}, `MARTY_RABBITMQ_URL="http://127.0.0.1:5672"`},
		{[]string{"MARTY_RABBITMQ_URL=http://u:s3cret@h:5672/"}, `xxxxx`},
		{[]string{"MARTY_RABBITMQ_PARTITIONS=0"}, `MARTY_RABBITMQ_PARTITIONS=0: want 1 to 1024`},
		{[]string{"MARTY_RABBITMQ_PREFETCH=70000"}, `MARTY_RABBITMQ_PREFETCH=70000`},
		{[]string{"MARTY_RABBITMQ_EXCHANGE=a b"}, `MARTY_RABBITMQ_EXCHANGE="a b"`},
		{[]string{"MARTY_RABBITMQ_BACKOFF=1s,soon"}, `MARTY_RABBITMQ_BACKOFF`},
		{[]string{"MARTY_RABBITMQ_PUBLISH_TIMEOUT=0s"}, `MARTY_RABBITMQ_PUBLISH_TIMEOUT="0s": want a positive duration`},
		{[]string{"MARTY_RABBITMQ_TLS_CERT_FILE=/tmp/c.pem"}, `MARTY_RABBITMQ_TLS_KEY_FILE`},
		{[]string{"MARTY_RABBITMQ_MAX_DELIVERIES=9", "MARTY_EVENTS_MAX_ATTEMPTS=5"}, `MARTY_RABBITMQ_MAX_DELIVERIES=9 is more than MARTY_EVENTS_MAX_ATTEMPTS=5`},
	}
	for _, c := range cases {
		t.Run(c.env[0], func(t *testing.T) {
			_, opts := appOptions(t, "orders", c.env, recordingHandler("mailer", newReceived()))
			err := fx.New(opts...).Err()
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
			require.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func TestUnreachableBrokerFailsStartWithTheAddressAndNoPassword(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	_, opts := appOptions(t, "orders", []string{"MARTY_RABBITMQ_URL=amqp://guest:s3cret@" + addr + "/", "MARTY_RABBITMQ_CONNECT_TIMEOUT=500ms"})
	app := fx.New(opts...)
	require.NoError(t, app.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = app.Start(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "rabbitmq: connect to "+addr)
	require.NotContains(t, err.Error(), "s3cret")
	_ = app.Stop(ctx)
}

// Start declares the topology: durable quorum partition queues with
// single-active-consumer bound to the handler's event types, the delay
// queues and the dead-letter queue.
func TestStartDeclaresTheTopology(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	newApp(t, "notifier", tg.env("MARTY_RABBITMQ_PARTITIONS=3", "MARTY_EVENTS_MAX_ATTEMPTS=3"), recordingHandler("mailer", newReceived()))
	ch, err := tg.amqpConn(t).Channel()
	require.NoError(t, err)
	consumer := rabbitmq.ConsumerName("notifier", "mailer")
	names := []string{rabbitmq.DeadQueueName("marty.events", consumer), rabbitmq.DelayQueueName("marty.events", consumer, 1),
		rabbitmq.DelayQueueName("marty.events", consumer, 2)}
	for p := range 3 {
		names = append(names, rabbitmq.QueueName("marty.events", consumer, p))
	}
	for _, q := range names {
		_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		require.NoError(t, err, q)
	}
	// A quorum queue with single-active-consumer: declaring it as a
	// classic queue is refused.
	_, err = ch.QueueDeclare(rabbitmq.QueueName("marty.events", consumer, 0), true, false, false, false, nil)
	require.Error(t, err)
	var ae *amqp.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, amqp.PreconditionFailed, ae.Code)
	_, err = tg.amqpConn(t).Channel()
	require.NoError(t, err)
}

// A queue or exchange that exists with other settings fails the start with
// a clear error naming it and what to do.
func TestTopologyConflictFailsStart(t *testing.T) {
	t.Parallel()
	t.Run("queue", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		ch, err := tg.amqpConn(t).Channel()
		require.NoError(t, err)
		q := rabbitmq.QueueName("marty.events", rabbitmq.ConsumerName("notifier", "mailer"), 1)
		_, err = ch.QueueDeclare(q, true, false, false, false, nil) // classic
		require.NoError(t, err)
		err = startErr(t, "notifier", tg.env(), recordingHandler("mailer", newReceived()))
		require.ErrorContains(t, err, "rabbitmq: declare queue "+q)
		require.ErrorContains(t, err, "already exists with other settings")
		require.ErrorContains(t, err, "inequivalent arg")
	})
	t.Run("exchange", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		ch, err := tg.amqpConn(t).Channel()
		require.NoError(t, err)
		require.NoError(t, ch.ExchangeDeclare("marty.events", amqp.ExchangeFanout, true, false, false, false, nil))
		err = startErr(t, "orders", tg.env())
		require.ErrorContains(t, err, "rabbitmq: declare exchange marty.events")
		require.ErrorContains(t, err, "already exists with other settings")
	})
	t.Run("delay", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		ch, err := tg.amqpConn(t).Channel()
		require.NoError(t, err)
		// Made with other backoff settings: the TTL differs.
		q := rabbitmq.DelayQueueName("marty.events", rabbitmq.ConsumerName("notifier", "mailer"), 1)
		_, err = ch.QueueDeclare(q, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum,
			"x-message-ttl": int64(60000), "x-dead-letter-exchange": "", "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
		require.NoError(t, err)
		err = startErr(t, "notifier", tg.env("MARTY_RABBITMQ_BACKOFF=1s"), recordingHandler("mailer", newReceived()))
		require.ErrorContains(t, err, "rabbitmq: declare queue "+q)
		require.ErrorContains(t, err, "x-message-ttl")
	})
}

func startErr(t *testing.T, service string, env []string, opts ...fx.Option) error {
	t.Helper()
	_, all := appOptions(t, service, env, opts...)
	app := fx.New(all...)
	require.NoError(t, app.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := app.Start(ctx)
	require.Error(t, err)
	_ = app.Stop(ctx)
	return err
}

func TestBadTLSFilesFailStartNamingTheVariables(t *testing.T) {
	t.Parallel()
	_, opts := appOptions(t, "orders", []string{"MARTY_RABBITMQ_TLS_CA_FILE=/nonexistent/ca.pem"})
	app := fx.New(opts...)
	require.NoError(t, app.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := app.Start(ctx)
	require.ErrorContains(t, err, "rabbitmq: TLS (MARTY_RABBITMQ_TLS_*)")
	_ = app.Stop(ctx)
}
