//go:build !linux

package bench

import (
	"errors"
	"os/exec"
	"time"
)

const supported = false

func killWithParent(*exec.Cmd) {}

var errNotLinux = errors.New("process statistics are read on Linux only")

func procCPU(int) (time.Duration, error) { return 0, errNotLinux }
func procPeakRSS(int) (uint64, error)    { return 0, errNotLinux }
