package bench

import (
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// supported tells whether Run works here: it needs getrusage and parent-death signals.
const supported = true

// killWithParent makes the kernel kill cmd's process if this one dies first, so that
// no server outlives a crashed or killed benchmark.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// cpuTime returns the user and system CPU time this process has used so far.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
