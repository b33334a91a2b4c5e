package broker

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEnabled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env            []string
		want, embedded bool
	}{
		{nil, false, false},
		{[]string{"MARTY_NATS_URL="}, false, false},
		{[]string{"MARTY_NATS_URL=  "}, false, false},
		{[]string{"MARTY_NATS_URL=nats://127.0.0.1:4222"}, true, false},
		{[]string{"MARTY_NATS_EMBEDDED=true"}, true, true},
		{[]string{"MARTY_NATS_EMBEDDED=1"}, true, true},
		{[]string{"MARTY_NATS_EMBEDDED=false"}, false, false},
		{[]string{"MARTY_NATS_EMBEDDED=maybe"}, false, false},
		{[]string{"MARTY_NATS_EMBEDDED=true", "MARTY_NATS_EMBEDDED=false"}, false, false},
		{[]string{"MARTY_NATS_URLX=nats://x", "OTHER=1"}, false, false},
	} {
		require.Equal(t, tc.want, Enabled(tc.env), "%q", tc.env)
		require.Equal(t, tc.embedded, Embedded(tc.env), "%q", tc.env)
		require.Equal(t, tc.want, len(Options(tc.env)) == 1, "%q", tc.env)
	}
}
