package rabbitmq_test

import (
	"context"
	"fmt"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/rabbitmq"
)

// ExampleNewConn uses the transport without Fx: a started Conn is an
// fxevents.Transport (it needs a broker, so this example is not run).
func ExampleNewConn() {
	cfg := rabbitmq.DefaultConfig() // cfg.URL: amqp://guest:guest@127.0.0.1:5672/
	conn, err := rabbitmq.NewConn(cfg, rabbitmq.ConnOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := conn.Start(ctx); err != nil { // connects, declares the exchanges
		fmt.Println(err)
		return
	}
	defer func() { _ = conn.Close(ctx) }()
	env, _ := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: "42"}, fxevents.DefaultCodec())
	var transport fxevents.Transport = conn
	fmt.Println(transport.Publish(ctx, env)) // returns once the broker confirmed it
}

// The names of a service's queues for a handler, and where an aggregate's
// events go.
func ExampleQueueName() {
	consumer := rabbitmq.ConsumerName("notifier", "mailer.v2")
	p := rabbitmq.Partition("order-42", 4)
	fmt.Println(consumer)
	fmt.Println(rabbitmq.RoutingKey("orders.placed", p), "->", rabbitmq.QueueName("marty.events", consumer, p))
	fmt.Println(rabbitmq.DelayQueueName("marty.events", consumer, 1))
	fmt.Println(rabbitmq.DeadQueueName("marty.events", consumer))
	// Output:
	// notifier_mailer_v2
	// orders.placed.0 -> marty.events.notifier_mailer_v2.0
	// marty.events.notifier_mailer_v2.retry.1
	// marty.events.notifier_mailer_v2.dead
}
