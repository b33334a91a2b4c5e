//go:build !unix

package load

import "time"

// processCPU is not measured on this platform: CPU per operation is 0.
func processCPU() time.Duration { return 0 }
