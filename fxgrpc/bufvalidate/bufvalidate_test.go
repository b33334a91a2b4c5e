package bufvalidate_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxgrpc/bufvalidate"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestViolationsAreInvalidArgumentWithEachField(t *testing.T) {
	t.Parallel()
	v, err := bufvalidate.New()
	require.NoError(t, err)

	err = v.ValidateMessage(&testpb.CheckRequest{Email: "not-an-email", Count: 11})
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
	require.Len(t, st.Details(), 1)
	br, ok := st.Details()[0].(*errdetails.BadRequest)
	require.True(t, ok, "%T", st.Details()[0])
	var fields []string
	for _, fv := range br.GetFieldViolations() {
		fields = append(fields, fv.GetField())
		require.NotEmpty(t, fv.GetDescription())
	}
	require.Equal(t, []string{"email", "count"}, fields)

	require.NoError(t, v.ValidateMessage(&testpb.CheckRequest{Email: "a@example.com", Count: 3}))
	require.NoError(t, v.ValidateMessage(&testpb.EchoResponse{}), "a type without rules passes")
}
