package saga_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/saga"
	"github.com/martyfx/martyfx/fxtest"
)

// natsEnv is a stream and subject prefix of the test's own on the NATS
// server at MARTY_TEST_NATS_URL, deleted at cleanup.
func natsEnv(t *testing.T) []string {
	fxtest.Integration(t, fxtest.NeedNATS)
	url := os.Getenv("MARTY_TEST_NATS_URL")
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	stream, prefix := "SAGATEST_"+id, "sagatest"+id
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = js.DeleteStream(ctx, stream)
		}
	})
	return []string{"MARTY_NATS_URL=" + url, "MARTY_NATS_STREAM=" + stream, "MARTY_NATS_SUBJECT_PREFIX=" + prefix,
		"MARTY_NATS_ACK_WAIT=5s"}
}

// The saga gets its events from JetStream (the outbox relays to the
// broker): the same guarantees, and a v1 event is upcast on the way.
func TestSagaOverNATSJetStream(t *testing.T) {
	t.Parallel()
	b := pgBackend(t)
	env := natsEnv(t)
	h := &hooks{deadline: 200 * time.Millisecond}
	a := newApp(t, b, env, orderSaga(h), natsjs.Module)
	a.publish(t, OrderPlaced{OrderID: "ok-1", Customer: "ok"}, OrderPlaced{OrderID: "decline-1", Customer: "decline"},
		OrderPlaced{OrderID: "silent-1", Customer: "silent"})
	a.waitStatus(t, "ok-1", saga.StatusCompleted)
	a.waitStatus(t, "decline-1", saga.StatusCompensated)
	a.waitStatus(t, "silent-1", saga.StatusCompensated)
	require.Eventually(t, func() bool { return count(t, a.db, "SELECT COUNT(*) FROM effects") == 2+4+4 }, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{cmdReserve, cmdConfirm}, effects(t, a.db, "ok-1"))
	require.Equal(t, []string{cmdReserve, cmdCancel, cmdRelease, cmdNotify}, effects(t, a.db, "decline-1"))
	require.Equal(t, []string{cmdReserve, cmdCancel, cmdRelease, cmdNotify}, effects(t, a.db, "silent-1"))
}

func TestSagaV1EventThroughNATSIsUpcast(t *testing.T) {
	t.Parallel()
	b := pgBackend(t)
	env := natsEnv(t)
	nb := newBuild()
	a := newApp(t, b, env, nb, natsjs.Module, saga.AsUpcaster(orderPlacedV1to2))
	a.publish(t, OrderPlacedV1{OrderID: "n-1", Customer: "dee", Amount: 42})
	a.waitStatus(t, "n-1", saga.StatusRunning)
	st, _, err := nb.Load(context.Background(), a.rt, "n-1")
	require.NoError(t, err)
	require.Equal(t, Money{Units: 42, Currency: "EUR"}, st.Total)
}
