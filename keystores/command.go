package keystores

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

// FileError is a keystore file of a command that does not pass CheckFile. It unwraps
// to CheckFile's error, so errors.Is(err, ErrWrongPassword) and the like work on it.
type FileError struct {
	// Field is the path of the field to fix: the environment's password for a wrong
	// password, its keyStoreType for a wrong type, its file otherwise, e.g.
	// "params.keyStoreEnvironmentList[1].file" or, in a plan,
	// "steps[0].params.keyStoreEnvironmentList[1].file".
	Field string
	// Environment is the entry's environmentName.
	Environment string
	Err         error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("%s (environment %q): %v", e.Field, e.Environment, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Rejection is the error of the command's rejected result: code invalid_command, the
// field, and a message that names the environment.
func (e *FileError) Rejection() *messages.Error {
	return &messages.Error{Code: messages.CodeInvalidCommand, Field: e.Field,
		Message: fmt.Sprintf("(environment %q) is refused: %v", e.Environment, e.Err)}
}

// CheckCommand opens every keystore file of a decoded command, a plan's steps
// included, with CheckFile as of now, and returns the first problem as a *FileError,
// with every warning found, each prefixed with its field and environment.
//
// A file must hold a private key when the same command assigns its keystore where a
// key is needed: a plan step credential.keystore.set with its keystoreName, or
// proxy.mtls.update with its keyStoreName (credential.truststore.set and
// trustStoreName take certificates only). A command that creates or updates a
// keystore on its own does not say how the keystore is used, so it needs no key.
//
// An environment whose file or password is still sealed is skipped: only a worker
// holding the key can open it, and the worker checks it then.
func CheckCommand(cmd *messages.Command, now time.Time) (warnings []string, err error) {
	steps := []*messages.Command{cmd}
	paths := []string{"params"}
	if plan, ok := cmd.Plan(); ok {
		steps, paths = nil, nil
		for i, step := range plan.Steps {
			steps = append(steps, step)
			paths = append(paths, fmt.Sprintf("steps[%d].params", i))
		}
		for i, step := range plan.OnFailure {
			steps = append(steps, step)
			paths = append(paths, fmt.Sprintf("onFailure[%d].params", i))
		}
	}
	keyStoreNames := namesAssignedAsKeyStores(steps)
	for i, step := range steps {
		names, environments := keystoreFiles(step.Params)
		needKey := false
		for _, name := range names {
			needKey = needKey || keyStoreNames[name]
		}
		for j, env := range environments {
			path := fmt.Sprintf("%s.keyStoreEnvironmentList[%d]", paths[i], j)
			w, err := checkEnvironment(env, needKey, now)
			for _, warning := range w {
				warnings = append(warnings, fmt.Sprintf("%s.file (environment %q): %s", path, env.EnvironmentName, warning))
			}
			if err != nil {
				return warnings, &FileError{Field: path + "." + faultyField(err), Environment: env.EnvironmentName, Err: err}
			}
		}
	}
	return warnings, nil
}

// keystoreFiles returns the names a command's keystore has (before and after a
// rename) and its files. A new params type that carries files must be added here;
// a test walks the command types to make sure.
func keystoreFiles(params messages.Params) (names []string, environments []messages.KeyStoreEnvironment) {
	switch p := params.(type) {
	case *messages.KeystoreCreate:
		return []string{p.Name}, p.KeyStoreEnvironmentList
	case *messages.KeystoreUpdate:
		names = []string{p.KeystoreName}
		if p.Name != nil {
			names = append(names, *p.Name)
		}
		return names, p.KeyStoreEnvironmentList
	}
	return nil, nil
}

// namesAssignedAsKeyStores returns the keystores that commands put where a private
// key is needed. Ids are left out: only APIOps knows which keystore one names.
func namesAssignedAsKeyStores(cmds []*messages.Command) map[string]bool {
	names := map[string]bool{}
	for _, c := range cmds {
		switch p := c.Params.(type) {
		case *messages.CredentialKeystoreSet:
			names[p.KeystoreName] = true
		case *messages.ProxyMTLSUpdate:
			if p.KeyStoreName != nil && *p.KeyStoreName != "" {
				names[*p.KeyStoreName] = true
			}
		}
	}
	return names
}

func checkEnvironment(env messages.KeyStoreEnvironment, needKey bool, now time.Time) ([]string, error) {
	if _, sealed := env.File.Sealed(); sealed && env.File.Reveal() == "" {
		return nil, nil
	}
	if _, sealed := env.Password.Sealed(); sealed && env.Password.Reveal() == "" {
		return nil, nil
	}
	file, err := base64.StdEncoding.DecodeString(env.File.Reveal())
	if err != nil {
		return nil, nil // Decode has refused it already; it names the field
	}
	defer clear(file)
	password := []byte(env.Password.Reveal())
	defer clear(password)
	return CheckFile(file, env.KeyStoreType, password, needKey, now)
}

// faultyField names the member of the environment entry an operator has to change.
func faultyField(err error) string {
	switch {
	case errors.Is(err, ErrWrongPassword):
		return "password"
	case errors.Is(err, ErrWrongType), errors.Is(err, ErrUnknownKind):
		return "keyStoreType"
	}
	return "file"
}
