package expiry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Passwords gives the password that opens a keystore's exported file. Errors say why
// there is none and never hold a password.
type Passwords interface {
	Password(project, keystore, environment string) ([]byte, error)
}

// PasswordFunc is a Passwords from a function that knows them or not, e.g. the demo
// simulator's.
type PasswordFunc func(project, keystore string) (string, bool)

func (f PasswordFunc) Password(project, keystore, _ string) ([]byte, error) {
	password, ok := f(project, keystore)
	if !ok {
		return nil, fmt.Errorf("no password for keystore %s of project %s", keystore, project)
	}
	return []byte(password), nil
}

// DirPasswords reads passwords from a directory, such as a Kubernetes Secret mounted
// as one: the file <project>.<keystore>.<environment>, or else <project>.<keystore>,
// holds the password, a trailing line break dropped. A file that holds a sealed value
// (the JSON object {"sealed", "for", "from"} of a value sealed for the workers' key,
// bound to the project and the field "password") is opened with Opener. Files are read
// at each read, so that a changed Secret takes effect without a restart.
type DirPasswords struct {
	Dir string
	// Opener opens sealed values (the worker's --seal-keys); nil: sealed files are
	// refused.
	Opener messages.Opener
}

// maxPasswordFile bounds a password file: a password, or a sealed one, is short.
const maxPasswordFile = 64 << 10

func (d DirPasswords) Password(project, keystore, environment string) ([]byte, error) {
	for _, part := range []string{project, keystore, environment} {
		// A name from APIOps becomes part of a file name: nothing that leaves the
		// directory or names a hidden file.
		if strings.ContainsAny(part, `/\`) || strings.HasPrefix(part, ".") || strings.ContainsRune(part, 0) {
			return nil, fmt.Errorf("keystore %s of project %s: the names cannot form a password file name", keystore, project)
		}
	}
	names := []string{project + "." + keystore}
	if environment != "" {
		names = append([]string{project + "." + keystore + "." + environment}, names...)
	}
	for _, name := range names {
		data, err := readSmallFile(filepath.Join(d.Dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("password file %s: %w", name, err)
		}
		password, err := d.value(project, data)
		if err != nil {
			return nil, fmt.Errorf("password file %s: %w", name, err)
		}
		return password, nil
	}
	return nil, fmt.Errorf("no password file %s in %s", strings.Join(names, " or "), d.Dir)
}

// value is the password a file holds: plaintext, or a sealed value opened.
func (d DirPasswords) value(project string, data []byte) ([]byte, error) {
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("{")) {
		if len(data) == 0 {
			return nil, errors.New("it is empty")
		}
		return data, nil
	}
	defer clear(data)
	var sealed messages.Sealed
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sealed); err != nil || sealed.Box == "" || sealed.For == "" {
		return nil, errors.New(`it starts with "{" but is not a sealed value ({"sealed", "for", "from"})`)
	}
	if d.Opener == nil {
		return nil, errors.New("it holds a sealed value, and the worker has no keys to open it (--seal-keys)")
	}
	content, err := d.Opener.Open(sealed)
	switch {
	case err != nil:
		return nil, fmt.Errorf("the sealed value cannot be opened: %w", err)
	case content.Project != project:
		return nil, fmt.Errorf("the sealed value was sealed for another project, not %s", project)
	case content.Field != "password":
		return nil, errors.New(`the sealed value was sealed for another field, not "password"`)
	case content.Value == "":
		return nil, errors.New("the sealed value is empty")
	}
	return []byte(content.Value), nil
}

func readSmallFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, err
	case !st.Mode().IsRegular():
		return nil, errors.New("not a regular file")
	case st.Size() > maxPasswordFile:
		return nil, fmt.Errorf("%d bytes is too large for a password", st.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxPasswordFile))
}
