package e2e

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// No reaper container: its image cannot be pulled here. Mapped ports are reached
	// on loopback, whatever testcontainers would guess the Docker host to be.
	for k, v := range map[string]string{"TESTCONTAINERS_RYUK_DISABLED": "true", "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1"} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	os.Exit(m.Run())
}
