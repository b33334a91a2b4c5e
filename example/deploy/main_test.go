package deploy

import (
	"testing"

	"github.com/martyfx/martyfx/fxtest"
)

func TestMain(m *testing.M) { fxtest.VerifyNoLeaks(m) }
