package expiry

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/keystores"
	"github.com/apiops-worker/apiops-worker/messages"
)

// reader reads one project's certificates and keystores.
type reader struct {
	src       Source
	passwords Passwords // nil: none configured
}

// listing is what a read learnt of one kind: its entries, its failures, and whether
// the list itself was read (then an earlier entry it does not name is gone).
type listing struct {
	kind     string
	entries  []Entry
	failures []Failure
	listed   bool
	// environments are the environment names the list showed.
	environments []string
	// listedKeys are the (name, environment) pairs the list named, read or not.
	listedKeys map[entryKey]bool
}

func (l *listing) fail(f Failure) { l.failures = append(l.failures, f) }

func listRequest(project, kind string) messages.APIRequest {
	return messages.APIRequest{Method: http.MethodGet, Path: []string{"apiops", "projects", project, kind}}
}

// certificates reads GET .../certificates/: each certificate in each environment,
// its end date or, when that is missing or unreadable, its content's NotAfter.
func (r reader) certificates(ctx context.Context, project string) listing {
	l := listing{kind: KindCertificate, listedKeys: map[entryKey]bool{}}
	items, err := r.src.Read(ctx, listRequest(project, "certificates"))
	if err != nil {
		l.fail(Failure{Kind: KindCertificate, Reason: reasonOf(err), err: fmt.Errorf("list the certificates: %w", err)})
		return l
	}
	l.listed = true
	for _, item := range items {
		name, _ := apiops.Member[string](item, "name")
		envs, ok := objectList(item, "certificateEnvironmentList")
		if name == "" || !ok {
			l.fail(Failure{Kind: KindCertificate, Name: name, Reason: ReasonUnrecognised,
				err: errors.New("a listed certificate has no name or no certificateEnvironmentList")})
			continue
		}
		for _, env := range envs {
			environment, _ := apiops.Member[string](env, "environmentName")
			if environment != "" && !slices.Contains(l.environments, environment) {
				l.environments = append(l.environments, environment)
			}
			e := Entry{Project: project, Kind: KindCertificate, Name: name, Environment: environment}
			l.listedKeys[e.key()] = true
			notAfter, subject, err := certificateDates(env)
			if err != nil {
				reason := ReasonUnrecognised
				if errors.Is(err, errBadContent) {
					reason = ReasonUnreadableFile
				}
				l.fail(Failure{Kind: KindCertificate, Name: name, Environment: environment, Reason: reason, err: err})
				continue
			}
			e.NotAfter, e.Subject = notAfter, subject
			l.entries = append(l.entries, e)
		}
	}
	return l
}

var errBadContent = errors.New("base64EncodedContent is not a certificate")

// certificateDates reads one certificateEnvironmentList item: endDate, else the
// NotAfter of base64EncodedContent.
func certificateDates(env map[string]json.RawMessage) (notAfter time.Time, subject string, err error) {
	subject, _ = apiops.Member[string](env, "subjectDn")
	if t, ok := parseDate(env["endDate"]); ok {
		return t, subject, nil
	}
	content, ok := apiops.Member[string](env, "base64EncodedContent")
	if !ok || content == "" {
		return time.Time{}, "", errors.New("the certificate has neither a readable endDate nor base64EncodedContent")
	}
	cert, err := parseCertificate(content)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("no readable endDate, and %w: %v", errBadContent, err)
	}
	if subject == "" {
		subject = cert.Subject.String()
	}
	return cert.NotAfter, subject, nil
}

// dateLayouts are the forms of an ISO 8601 date-time read: RFC 3339 (a fraction of
// a second is accepted whether or not the layout has one), without an offset (UTC),
// with an offset without a colon (Java's +0000), and a date alone.
var dateLayouts = []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04:05Z0700", "2006-01-02"}

// parseDate reads an ISO 8601 date-time string, or a number of milliseconds since
// 1970 (Jackson's default for dates).
func parseDate(raw json.RawMessage) (time.Time, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var ms json.Number
		if err := json.Unmarshal(raw, &ms); err != nil {
			return time.Time{}, false
		}
		n, err := ms.Int64()
		if err != nil || n <= 0 {
			return time.Time{}, false
		}
		return time.UnixMilli(n).UTC(), true
	}
	s = strings.TrimSpace(s)
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// parseCertificate reads a certificate given as base64 of DER or of PEM, or as PEM.
func parseCertificate(content string) (*x509.Certificate, error) {
	data := []byte(content)
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		decoded, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(content), ""))
		if err != nil {
			return nil, errors.New("not base64")
		}
		data = decoded
	}
	if block, _ := pem.Decode(data); block != nil {
		data = block.Bytes
	}
	return x509.ParseCertificate(data)
}

// keystores reads GET .../keystores/ and, for each keystore and environment, exports
// its file and opens it with its password. certEnvironments are the environment
// names the certificate list showed, a fallback for environment entries that carry
// only an environmentId (list-keystores.mdx), which no other answer maps to a name.
func (r reader) keystores(ctx context.Context, project string, certEnvironments []string) listing {
	l := listing{kind: KindKeystore, listedKeys: map[entryKey]bool{}}
	items, err := r.src.Read(ctx, listRequest(project, "keystores"))
	if err != nil {
		l.fail(Failure{Kind: KindKeystore, Reason: reasonOf(err), err: fmt.Errorf("list the keystores: %w", err)})
		return l
	}
	l.listed = true
	var projectEnvironments []string // read when first needed
	for _, item := range items {
		name, _ := apiops.Member[string](item, "name")
		envs, ok := objectList(item, "keyStoreEnvironmentList")
		if name == "" || !ok {
			l.fail(Failure{Kind: KindKeystore, Name: name, Reason: ReasonUnrecognised,
				err: errors.New("a listed keystore has no name or no keyStoreEnvironmentList")})
			continue
		}
		named := map[string]bool{}
		var unnamed []string // the keyStoreType of each entry without environmentName
		for _, env := range envs {
			if ctx.Err() != nil {
				return l
			}
			environment, _ := apiops.Member[string](env, "environmentName")
			kind, _ := apiops.Member[string](env, "keyStoreType")
			if environment == "" {
				unnamed = append(unnamed, kind)
				continue
			}
			named[environment] = true
			r.keystoreEntry(ctx, &l, project, name, environment, kind)
		}
		if len(unnamed) == 0 {
			continue
		}
		if projectEnvironments == nil {
			projectEnvironments = r.environments(ctx, project, certEnvironments)
		}
		r.unnamedEntries(ctx, &l, project, name, unnamed, projectEnvironments, named)
	}
	return l
}

// keystoreEntry reads one environment's file of a keystore into l; it reports whether
// it could.
func (r reader) keystoreEntry(ctx context.Context, l *listing, project, name, environment, kind string) (ok bool, reason string) {
	e := Entry{Project: project, Kind: KindKeystore, Name: name, Environment: environment}
	l.listedKeys[e.key()] = true
	cert, reason, err := r.keystoreCertificate(ctx, project, name, environment, kind)
	if err != nil {
		l.fail(Failure{Kind: KindKeystore, Name: name, Environment: environment, Reason: reason, err: err})
		return false, reason
	}
	e.NotAfter, e.Subject = cert.NotAfter, cert.Subject.String()
	l.entries = append(l.entries, e)
	return true, ""
}

// unnamedEntries reads the files of a keystore whose environment entries carry no
// name: it tries each of the project's environments not named already until as many
// files as entries were read. Environments the keystore has no file for fail to
// export; those failures count only when fewer files than entries were found.
func (r reader) unnamedEntries(ctx context.Context, l *listing, project, name string, kinds, candidates []string, named map[string]bool) {
	var tried listing
	tried.listedKeys = l.listedKeys
	found := 0
	for _, environment := range candidates {
		if found == len(kinds) || ctx.Err() != nil {
			break
		}
		if named[environment] {
			continue
		}
		ok, reason := r.keystoreEntry(ctx, &tried, project, name, environment, kinds[found])
		if ok {
			found++
		}
		if reason == ReasonNoPassword {
			break // the same for every environment
		}
	}
	l.entries = append(l.entries, tried.entries...)
	switch {
	case found == len(kinds):
	case len(tried.failures) > 0:
		l.failures = append(l.failures, tried.failures...)
	default:
		l.fail(Failure{Kind: KindKeystore, Name: name, Reason: ReasonUnrecognised,
			err: errors.New("the keystore's environments are named by id only, and the project's environment names are unknown")})
	}
}

// environments are the names of the project's environments: GET .../environments/
// (get-environments-by-project.mdx), or, where that cannot be read, those the
// certificate list showed.
func (r reader) environments(ctx context.Context, project string, fallback []string) []string {
	items, err := r.src.Read(ctx, listRequest(project, "environments"))
	names := []string{}
	if err == nil {
		for _, item := range items {
			if name, _ := apiops.Member[string](item, "name"); name != "" {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		names = append(names, fallback...)
	}
	return names
}

// keystoreCertificate exports one environment's file of a keystore, opens it, and
// returns the certificate in it that expires first. The password and the file are
// cleared once used; errors name neither.
func (r reader) keystoreCertificate(ctx context.Context, project, name, environment, kind string) (*x509.Certificate, string, error) {
	if r.passwords == nil {
		return nil, ReasonNoPassword, errors.New("no keystore passwords are configured (--watch-keystore-passwords)")
	}
	password, err := r.passwords.Password(project, name, environment)
	if err != nil {
		return nil, ReasonNoPassword, err
	}
	defer clear(password)
	file, err := r.src.Export(ctx, project, name, environment)
	if err != nil {
		return nil, reasonOf(err), fmt.Errorf("export the file: %w", err)
	}
	defer clear(file)
	declared := kind
	if declared == "" {
		declared = keystores.KindPKCS12
	}
	contents, err := keystores.Open(file, declared, password)
	if kind == "" && errors.Is(err, keystores.ErrWrongType) { // undeclared: the other one
		contents, err = keystores.Open(file, keystores.KindJKS, password)
	}
	if err != nil {
		return nil, ReasonUnreadableFile, fmt.Errorf("open the exported file: %w", err)
	}
	var first *x509.Certificate
	for _, c := range contents.Certificates {
		if first == nil || c.NotAfter.Before(first.NotAfter) {
			first = c
		}
	}
	if first == nil {
		why := "it lists no certificate"
		if contents.Unlisted != "" {
			why = "its entries could not be listed: " + contents.Unlisted
		}
		return nil, ReasonUnreadableFile, errors.New("the exported file opens, but " + why)
	}
	return first, "", nil
}

// reasonOf is the failure reason of an error from the Source.
func reasonOf(err error) string {
	var apiErr *apiops.Error
	if errors.As(err, &apiErr) && apiErr.Code == apiops.CodeUnrecognisedResponse {
		return ReasonUnrecognised
	}
	return ReasonAPIOps
}

// objectList reads a member that is a list of objects; null counts as an empty list.
func objectList(m map[string]json.RawMessage, name string) ([]map[string]json.RawMessage, bool) {
	raw, ok := m[name]
	if !ok {
		return nil, false
	}
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, false
	}
	return list, true
}
