package worker

import (
	"errors"

	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/keystores"
	"github.com/apiops-worker/apiops-worker/messages"
)

// checkKeystores opens every keystore file of a decoded command, its sealed values
// already opened, and returns the rejection for one that APIOps would refuse: a wrong
// password, a file of the other type, no keystore at all, a missing private key, or
// certificates out of date. Caught here, such a file stops the command, or the whole
// plan, before its first request rather than failing environment by environment in
// the middle of a rotation.
//
// Warnings (a certificate about to expire) are logged with the command: they name
// fields, environments and certificates, never values.
func (w *Worker) checkKeystores(cmd *messages.Command) error {
	warnings, err := keystores.CheckCommand(cmd, w.cfg.Clock.Now())
	for _, warning := range warnings {
		w.log.Warn("a keystore in a command needs attention", zap.String("project", cmd.Project),
			zap.String("id", cmd.ID), zap.String("type", cmd.Type), zap.String("warning", warning))
	}
	if err == nil {
		return nil
	}
	var fileErr *keystores.FileError
	if errors.As(err, &fileErr) {
		return fileErr.Rejection()
	}
	return &messages.Error{Code: messages.CodeInvalidCommand, Message: "a keystore file cannot be checked: " + err.Error()}
}
