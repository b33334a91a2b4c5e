package fxtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxtest"
)

func TestNATS(t *testing.T) {
	url := fxtest.NATS(t)
	require.Regexp(t, `^nats://127\.0\.0\.1:\d+$`, url)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	require.NoError(t, err, "JetStream is enabled")
	ack, err := js.Publish(ctx, "t.x", []byte("hi"))
	require.NoError(t, err)
	require.Equal(t, "T", ack.Stream)
}
