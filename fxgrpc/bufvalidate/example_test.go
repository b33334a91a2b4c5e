package bufvalidate_test

import (
	"fmt"

	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxgrpc/bufvalidate"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

// Without Fx, give the validator to fxgrpc.ServerOptions.Validator; with
// Fx, add bufvalidate.Module to the app. Here it checks one message.
func ExampleValidator_ValidateMessage() {
	v, err := bufvalidate.New()
	if err != nil {
		panic(err)
	}
	err = v.ValidateMessage(&testpb.CheckRequest{Email: "a@example.com", Count: 42})
	fmt.Println(status.Code(err))
	// Output: InvalidArgument
}
