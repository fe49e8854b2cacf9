package worker

import (
	"errors"

	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/keystores"
	"github.com/apiops-worker/apiops-worker/messages"
)

// checkHeldKeystores gives a held command whose keystore files are to be opened its
// verdict: the rejection of checkKeystores (see task.reject), if any. Opening costs up to
// about a second of a core for a costly command (see keystores.CheckCommand), so it is
// done here, by the command's own goroutine, rather than on its project's pull loop,
// where it would stall the project's intake and let the message's AckWait run out
// before the worker holds it (and keeps it alive). A project's checks run one at a
// time, so that its costly files take at most one core, never waiting for another
// project's. It returns mayGoOn's error, when t must stop rather than be checked.
func (w *Worker) checkHeldKeystores(t *task) error {
	if t.invalid != nil || t.planOf != nil || !keystores.HasFiles(t.cmd) {
		return nil
	}
	checking := w.traceChild(t, "check keystore files")
	defer checking.End()
	// An id lock that no command takes: a command's is <project>/<id>, and projects
	// hold no "/".
	defer w.ids.lock(t.cmd.Project + " keystore checks")()
	if err := t.mayGoOn(w.stopping.Load()); err != nil { // it waited: the term may have ended meanwhile
		return err
	}
	if invalid := w.checkKeystores(t.cmd); invalid != nil {
		t.reject(invalid)
	}
	return nil
}

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
