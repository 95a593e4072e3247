//go:build !linux

package bench

import (
	"os/exec"
	"time"
)

// setProcAttrs does nothing here; children still exit when their stdin
// (held by the harness) closes.
func setProcAttrs(*exec.Cmd) {}

// procCPU is only implemented on Linux (/proc).
func procCPU(int) (time.Duration, bool) { return 0, false }

// systemCPU is only implemented on Linux (/proc).
func systemCPU() (busy, total time.Duration, ok bool) { return 0, 0, false }
