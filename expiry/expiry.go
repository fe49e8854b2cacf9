// Package expiry watches when the certificates APIOps holds expire: for each watched
// project, the certificates APIOps lists (their end dates) and the keystores' files
// (exported and opened, the earliest certificate in each), read by the active worker
// at an interval. It exports them as metrics and publishes each project's table to a
// stream, from which apiopsctl expiry prints it.
//
// Nothing here logs, publishes or counts a keystore password or file: failures are
// named by project, kind, keystore, environment and a reason.
package expiry

import (
	"context"
	"encoding/json"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Source is what the watcher reads APIOps through; *apiops.Client is one.
type Source interface {
	// Read sends a GET and returns the entries of the answer's resultList.
	Read(ctx context.Context, req messages.APIRequest) ([]map[string]json.RawMessage, error)
	// Export downloads a keystore's file for one environment.
	Export(ctx context.Context, project, keystore, environment string) ([]byte, error)
}

// The kinds of entry: a certificate APIOps lists, or a keystore's file.
const (
	KindCertificate = "certificate"
	KindKeystore    = "keystore"
)

// The reasons a read fails, a fixed set so that the failure counter's series stay few.
const (
	// ReasonAPIOps: APIOps refused the request, or did not answer.
	ReasonAPIOps = "apiops_error"
	// ReasonNoPassword: no password is configured for a keystore, or the one
	// configured cannot be read or opened.
	ReasonNoPassword = "no_password"
	// ReasonUnreadableFile: an exported keystore file does not open with its
	// password, or holds no certificate; or a certificate's content does not parse.
	ReasonUnreadableFile = "unreadable_file"
	// ReasonUnrecognised: APIOps answered in a shape the watcher does not read (no
	// name, no environment list, no date and no content).
	ReasonUnrecognised = "unrecognised_response"
)

// Reasons lists every failure reason.
func Reasons() []string {
	return []string{ReasonAPIOps, ReasonNoPassword, ReasonUnreadableFile, ReasonUnrecognised}
}

// Entry is one certificate's expiry: a certificate APIOps lists, in one environment,
// or the certificate of a keystore's file for one environment that expires first.
type Entry struct {
	Project     string    `json:"project"`
	Kind        string    `json:"kind"`
	Name        string    `json:"name"`
	Environment string    `json:"environment"`
	NotAfter    time.Time `json:"notAfter"`
	// Subject is the certificate's subject DN, when it is known.
	Subject string `json:"subject,omitempty"`
}

// key identifies an entry across reads.
func (e Entry) key() entryKey { return entryKey{e.Kind, e.Name, e.Environment} }

type entryKey struct{ kind, name, environment string }

// Failure is something a read could not learn. Name and Environment are empty when
// the whole list of a kind could not be read.
type Failure struct {
	Kind        string `json:"kind"`
	Name        string `json:"name,omitempty"`
	Environment string `json:"environment,omitempty"`
	Reason      string `json:"reason"`
	// err says why, for the log; it never holds a password or a file.
	err error
}

// Table is what the watcher knows of one project after a read: what it read then,
// and, for entries it could not read this time but did before, what it read before.
// It is published to Subject(prefix, project).
type Table struct {
	Project  string    `json:"project"`
	ReadAt   time.Time `json:"readAt"`
	Entries  []Entry   `json:"entries"`
	Failures int       `json:"failures"`
	// Failed lists the failures of the read, without their errors (see the log).
	Failed []Failure `json:"failed,omitempty"`
}

// StreamName is the stream of the tables: one message per project, the last.
const StreamName = "APIOPS_EXPIRY"

// Subject is where the table of project is published.
func Subject(prefix, project string) string { return prefix + ".expiry." + project }

// AllSubjects covers every project's table.
func AllSubjects(prefix string) string { return prefix + ".expiry.>" }
