package keystores

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

// FileError is a keystore file of a command that does not pass CheckFile, or the
// command's files together (Environment is "" then). It unwraps to the cause, so
// errors.Is(err, ErrWrongPassword) and the like work on it.
type FileError struct {
	// Field is the path of the field to fix: the environment's password for a wrong
	// password, its keyStoreType for a wrong type, its file otherwise, e.g.
	// "params.keyStoreEnvironmentList[1].file" or, in a plan,
	// "steps[0].params.keyStoreEnvironmentList[1].file"; the list itself, e.g.
	// "params.keyStoreEnvironmentList", for files too costly to open together.
	Field string
	// Environment is the entry's environmentName; "" for the files together.
	Environment string
	Err         error
}

func (e *FileError) Error() string {
	if e.Environment == "" {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s (environment %q): %v", e.Field, e.Environment, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Rejection is the error of the command's rejected result: code invalid_command, the
// field, and a message that names the environment.
func (e *FileError) Rejection() *messages.Error {
	message := fmt.Sprintf("(environment %q) is refused: %v", e.Environment, e.Err)
	if e.Environment == "" {
		message = fmt.Sprintf("is refused: %v", e.Err)
	}
	return &messages.Error{Code: messages.CodeInvalidCommand, Field: e.Field, Message: message}
}

// maxCommandIterations bounds the PBKDF iterations that the distinct PKCS12 files of
// one command show (see pfxWork), added up: four files at maxIterations, about a
// second of one core. A command is not a way to make the checker work for minutes with
// many files each within maxIterations.
const maxCommandIterations = 4 * maxIterations

// HasFiles reports whether cmd, or a step of its plan, carries keystore files, which
// CheckCommand opens.
func HasFiles(cmd *messages.Command) bool {
	steps, _ := commandSteps(cmd)
	for _, step := range steps {
		if _, environments := keystoreFiles(step.Params); len(environments) > 0 {
			return true
		}
	}
	return false
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
//
// The cost is bounded: a file that appears more than once with the same password and
// type is opened once, and before any is opened, the iteration counts the files show
// are added up; over maxCommandIterations, the command is refused as a whole
// (ErrUnsupportedKeystore, its field the keyStoreEnvironmentList where the sum went
// over).
func CheckCommand(cmd *messages.Command, now time.Time) (warnings []string, err error) {
	steps, paths := commandSteps(cmd)
	keyStoreNames := namesAssignedAsKeyStores(steps)
	var files []commandFile
	defer func() {
		for _, f := range files {
			clear(f.file)
			clear(f.password)
		}
	}()
	for i, step := range steps {
		names, environments := keystoreFiles(step.Params)
		needKey := false
		for _, name := range names {
			needKey = needKey || keyStoreNames[name]
		}
		for j, env := range environments {
			if f, ok := openable(env); ok {
				f.list, f.path, f.needKey = paths[i]+".keyStoreEnvironmentList", fmt.Sprintf("%s.keyStoreEnvironmentList[%d]", paths[i], j), needKey
				files = append(files, f)
			}
		}
	}
	if err := withinBudget(files); err != nil {
		return nil, err
	}
	type opened struct {
		contents Contents
		err      error
	}
	openedBefore := map[[sha256.Size]byte]opened{}
	for _, f := range files {
		o, seen := openedBefore[f.identity]
		if !seen {
			o.contents, o.err = Open(f.file, f.env.KeyStoreType, f.password)
			openedBefore[f.identity] = o
		}
		err := o.err
		var w []string
		if err == nil {
			w, err = checkContents(o.contents, f.needKey, now)
		}
		for _, warning := range w {
			warnings = append(warnings, fmt.Sprintf("%s.file (environment %q): %s", f.path, f.env.EnvironmentName, warning))
		}
		if err != nil {
			return warnings, &FileError{Field: f.path + "." + faultyField(err), Environment: f.env.EnvironmentName, Err: err}
		}
	}
	return warnings, nil
}

// commandSteps is cmd, or the steps of its plan (onFailure's included), with the path
// of each one's params.
func commandSteps(cmd *messages.Command) (steps []*messages.Command, paths []string) {
	plan, ok := cmd.Plan()
	if !ok {
		return []*messages.Command{cmd}, []string{"params"}
	}
	for i, step := range plan.Steps {
		steps = append(steps, step)
		paths = append(paths, fmt.Sprintf("steps[%d].params", i))
	}
	for i, step := range plan.OnFailure {
		steps = append(steps, step)
		paths = append(paths, fmt.Sprintf("onFailure[%d].params", i))
	}
	return steps, paths
}

// commandFile is one keystore environment of a command, its file decoded.
type commandFile struct {
	env            messages.KeyStoreEnvironment
	list, path     string // the paths of its keyStoreEnvironmentList and of its entry
	needKey        bool
	file, password []byte
	// identity is the same for the same file, password and type, which open alike.
	identity [sha256.Size]byte
}

// openable decodes env's file; false when it is not to be opened here: still sealed
// (only a worker holding the key can open it, and it checks it then), or not base64
// (Decode has refused it already, naming the field).
func openable(env messages.KeyStoreEnvironment) (commandFile, bool) {
	if _, sealed := env.File.Sealed(); sealed && env.File.Reveal() == "" {
		return commandFile{}, false
	}
	if _, sealed := env.Password.Sealed(); sealed && env.Password.Reveal() == "" {
		return commandFile{}, false
	}
	file, err := base64.StdEncoding.DecodeString(env.File.Reveal())
	if err != nil {
		return commandFile{}, false
	}
	f := commandFile{env: env, file: file, password: []byte(env.Password.Reveal())}
	h := sha256.New()
	for _, part := range [][]byte{[]byte(strings.ToUpper(env.KeyStoreType)), f.password, f.file} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write(part)
	}
	h.Sum(f.identity[:0])
	return f, true
}

// withinBudget refuses files whose distinct members show more than
// maxCommandIterations iterations together.
func withinBudget(files []commandFile) error {
	counted := map[[sha256.Size]byte]bool{}
	var total int64
	for _, f := range files {
		if counted[f.identity] {
			continue
		}
		counted[f.identity] = true
		if total += openingCost(f.file, f.env.KeyStoreType); total > maxCommandIterations {
			return &FileError{Field: f.list, Err: fmt.Errorf(
				"%w: the command's keystore files together ask for more than %d PBKDF iterations (%d up to environment %q), more than this checker runs for one command; send them in several commands",
				ErrUnsupportedKeystore, maxCommandIterations, total, f.env.EnvironmentName)}
		}
	}
	return nil
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
