package fxcore_test

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
)

// OrdersConfig is a module's config: a struct, its defaults and Validate.
type OrdersConfig struct {
	Addr    string        `koanf:"addr"`    // MARTY_ORDERS_ADDR
	Timeout time.Duration `koanf:"timeout"` // MARTY_ORDERS_TIMEOUT
	Mode    string        `koanf:"mode"`    // MARTY_ORDERS_MODE
	TLS     fxcore.TLS    `koanf:"tls"`     // MARTY_ORDERS_TLS_CERT_FILE ...
}

func DefaultOrdersConfig() OrdersConfig {
	return OrdersConfig{Addr: ":7000", Timeout: 5 * time.Second, Mode: "fast"}
}

func (c OrdersConfig) Validate() error {
	if err := fxcore.OneOf("mode", c.Mode, "fast", "safe"); err != nil {
		return err
	}
	return c.TLS.Validate("tls")
}

// Load reads a section over its defaults, from the environment (and the
// config file) the Source holds; errors name the variable.
func ExampleLoad() {
	src, _ := fxcore.NewSourceFrom("", []string{"MARTY_ORDERS_TIMEOUT=250ms", "MARTY_ORDERS_TLS_CERT_FILE=/etc/tls/cert.pem", "MARTY_ORDERS_TLS_KEY_FILE=/etc/tls/key.pem"})
	cfg, err := fxcore.Load(src, "orders", DefaultOrdersConfig())
	fmt.Println(cfg.Addr, cfg.Timeout, cfg.TLS.CertFile, err)

	src, _ = fxcore.NewSourceFrom("", []string{"MARTY_ORDERS_MODE=turbo"})
	_, err = fxcore.Load(src, "orders", DefaultOrdersConfig())
	fmt.Println(err)
	var fe *fxcore.FieldError
	fmt.Println(errors.As(err, &fe), fe.Key)
	// Output:
	// :7000 250ms /etc/tls/cert.pem <nil>
	// fxcore: invalid MARTY_ORDERS_MODE="turbo": want one of "fast", "safe"
	// true mode
}

// Greeting is what the AsGreeting helper registers.
type Greeting string

// AsGreeting is a module's registration helper: a value, or a constructor
// whose parameters Fx injects.
func AsGreeting(ctor any) fx.Option {
	return fxcore.Group("example.greetings", "example.AsGreeting", ctor, func(v any) (Greeting, error) {
		if g, ok := v.(Greeting); ok {
			return g, nil
		}
		return "", fmt.Errorf("got %T, want an example.Greeting", v)
	})
}

func newGreeting(name string) Greeting { return Greeting("hello, " + name) }

func newCount() int { return 3 }

// Group is the engine of every AsXxx helper: the user's constructor is what
// Fx provides, and a wrong type fails the app with the helper's name.
func ExampleGroup() {
	var got struct {
		fx.In
		All []Greeting `group:"example.greetings"`
	}
	app := fx.New(fx.NopLogger, fx.Supply("gopher"),
		AsGreeting(Greeting("hi")),
		AsGreeting(newGreeting),
		fx.Populate(&got))
	fmt.Println(len(got.All), app.Err())

	app = fx.New(fx.NopLogger, AsGreeting(newCount), fx.Populate(&got))
	cause, _, _ := strings.Cut(fxcore.DescribeError(app.Err()), "\n")
	fmt.Println(cause)
	// Output:
	// 2 <nil>
	// example.AsGreeting: fxcore_test.newCount: constructor func() int: got int, want an example.Greeting
}
