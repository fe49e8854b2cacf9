package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/seal"
)

// sealKeysReload is how often the key directory is read again, so that a key added to
// a mounted Secret is announced and a removed one stops opening values; a variable for
// tests.
var sealKeysReload = time.Minute

// loadSealKeys loads --seal-keys; nil without it.
func loadSealKeys(dir string, log *zap.Logger) (*seal.DirKeys, error) {
	if dir == "" {
		return nil, nil
	}
	keys, err := seal.NewDirKeys(dir)
	if err != nil {
		return nil, fmt.Errorf("--seal-keys (APIOPS_WORKER_SEAL_KEYS): %w", err)
	}
	log.Info("sealed secrets: keys loaded", zap.String("current", keys.Current()), zap.Int("keys", len(keys.Publics())))
	return keys, nil
}

// watchSealKeys reads the key directory again every interval until ctx ends, and
// registers the service again, announcing the keys held now, whenever they change
// (also when an unknown key made the worker read the directory).
func watchSealKeys(ctx context.Context, keys *seal.DirKeys, svc *service, interval time.Duration, log *zap.Logger) {
	changed := make(chan struct{}, 1)
	keys.OnChange(func(current string) {
		log.Info("sealed secrets: the current key changed", zap.String("current", current), zap.Int("keys", len(keys.Publics())))
		select { // OnChange must return at once: it may run inside a command's decoding
		case changed <- struct{}{}:
		default:
		}
	})
	announced := keys.Publics()
	announce := func() {
		announced = keys.Publics()
		if err := svc.register(); err != nil {
			log.Warn("sealed secrets: cannot announce the keys", zap.Error(err))
		}
	}
	failing := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			if !slices.Equal(keys.Publics(), announced) { // unless a periodic read announced them
				announce()
			}
		case <-time.After(interval):
			err := keys.Reload()
			switch {
			case err != nil && err.Error() != failing:
				log.Warn("sealed secrets: cannot read the key directory again; the keys loaded before stay", zap.Error(err))
				failing = err.Error()
			case err == nil:
				failing = ""
			}
			if held := keys.Publics(); !slices.Equal(held, announced) {
				log.Info("sealed secrets: keys read again", zap.String("current", keys.Current()), zap.Int("keys", len(held)))
				announce()
			}
		}
	}
}
