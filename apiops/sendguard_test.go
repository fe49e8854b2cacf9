package apiops_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/apiops-worker/apiops-worker/apiops"
)

// A request whose send guard refuses, before the request or after dialing its
// connection, never reaches APIOps.
func TestSendGuardStopsTheRequest(t *testing.T) {
	fenced := errors.New("fenced")
	for _, tc := range []struct {
		name  string
		allow int32 // checks that pass before the guard refuses
	}{
		{"before the request", 0},
		{"after the dial", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, client := startSim(t, loadSeed(t))
			var checks atomic.Int32
			ctx := apiops.WithSendGuard(context.Background(), func() error {
				if checks.Add(1) > tc.allow {
					return fenced
				}
				return nil
			})
			_, err := client.Do(ctx, exampleCommand(t, "keystore.delete").APIRequest())
			if !errors.Is(err, apiops.ErrNotSent) || !errors.Is(err, fenced) {
				t.Errorf("error %v, want ErrNotSent and the guard's", err)
			}
			if n := len(sim.Requests()); n != 0 {
				t.Errorf("APIOps saw %d requests", n)
			}
			if checks.Load() != tc.allow+1 {
				t.Errorf("the guard was asked %d times", checks.Load())
			}
		})
	}
}
