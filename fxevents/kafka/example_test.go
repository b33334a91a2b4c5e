package kafka_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/kafka"
)

// ExampleNewConn uses the transport without Fx, here on kfake (an
// in-process Kafka; a real cluster: cfg.Brokers, MARTY_KAFKA_BROKERS):
// events go from the Conn, an fxevents.Transport, through Kafka to a
// handler run by Consumers.
func ExampleNewConn() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()

	cfg := kafka.DefaultConfig()
	cfg.Brokers = strings.Join(cluster.ListenAddrs(), ",")
	cfg.ReplicationFactor = 1
	conn, err := kafka.NewConn(cfg, kafka.ConnOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := conn.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = conn.Close(ctx) }()

	got := make(chan string, 1)
	d, _ := fxevents.NewDispatcher(fxevents.DefaultConfig(), fxevents.DispatcherOptions{
		Handlers: []fxevents.Handler{fxevents.HandlerFunc("mailer", func(_ context.Context, e OrderPlaced) error {
			got <- e.OrderID
			return nil
		})},
	})
	consumers, _ := kafka.NewConsumers(kafka.ConsumersOptions{Conn: conn, Dispatcher: d})
	if err := consumers.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = consumers.Stop(ctx) }()

	env, _ := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: "42"}, fxevents.DefaultCodec())
	var transport fxevents.Transport = conn
	fmt.Println(transport.Publish(ctx, env), conn.Topic(env.Type))
	fmt.Println("handled order", <-got)
	// Output:
	// <nil> marty.events.orders.placed
	// handled order 42
}

func ExampleGroupName() {
	fmt.Println(kafka.GroupName("orders", "mailer.v2"))
	// Output: orders_mailer_v2
}
