package fxgrpc

import (
	"testing"

	"github.com/stretchr/testify/require"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

func TestHasRulesFindsBufValidateRulesOnly(t *testing.T) {
	t.Parallel()
	v, err := newValidation()
	require.NoError(t, err)
	require.True(t, v.hasRules((&testpb.CheckRequest{}).ProtoReflect().Descriptor()))
	require.False(t, v.hasRules((&testpb.EchoResponse{}).ProtoReflect().Descriptor()))
	// Nested messages without rules: skipped, so protovalidate never walks them.
	require.False(t, v.hasRules((&testgrpc.SimpleRequest{}).ProtoReflect().Descriptor()))
	require.NoError(t, v.validate(&testgrpc.SimpleRequest{ResponseSize: -1}))
	require.Error(t, v.validate(&testpb.CheckRequest{Email: "x", Count: 1}))
}
