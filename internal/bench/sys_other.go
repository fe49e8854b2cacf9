//go:build !linux

package bench

import (
	"errors"
	"os/exec"
	"time"
)

const supported = false

func killWithParent(*exec.Cmd) {}

func cpuTime() (time.Duration, error) { return 0, errors.New("CPU time is measured on Linux only") }
