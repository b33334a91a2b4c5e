package natsjs_test

import (
	"context"
	"fmt"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
)

// ExampleNewConn uses the transport without Fx: a Conn (here on an embedded
// development server, which natsdev provides) is an fxevents.Transport.
func ExampleNewConn() {
	cfg := natsjs.DefaultConfig()
	cfg.Embedded = true // MARTY_NATS_EMBEDDED=true; a real server: cfg.URL
	cfg.Storage = natsjs.StorageMemory
	conn, err := natsjs.NewConn(cfg, natsjs.ConnOptions{EmbeddedServer: natsdev.Embedded})
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

	env, _ := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: "42"}, fxevents.DefaultCodec())
	var transport fxevents.Transport = conn
	fmt.Println(transport.Publish(ctx, env), conn.Subject(env.Type))
	// Output: <nil> marty.events.orders.placed
}

func ExampleConsumerName() {
	fmt.Println(natsjs.ConsumerName("orders", "mailer.v2"))
	// Output: orders_mailer_v2
}
