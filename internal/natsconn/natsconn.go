// Package natsconn turns what users give to reach NATS (URLs, credentials, TLS files)
// into connection options, and keeps passwords out of messages.
package natsconn

import (
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
)

// Auth is who the connection is and how it verifies the server; empty fields are not
// used.
type Auth struct {
	Creds          string // credentials file (JWT and nkey)
	User, Password string
	CA             string // CA certificates (PEM) for the server's certificate
	Cert, Key      string // client certificate and key (PEM)
	// InboxPrefix is where the identity receives replies: its pulled messages, its
	// JetStream answers and results sent to its replyTo. Permissions that let an
	// identity subscribe only under its own prefix keep others' replies from it.
	InboxPrefix string
}

// Options returns the nats.Options for a.
func (a Auth) Options() []nats.Option {
	var opts []nats.Option
	if a.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(a.InboxPrefix))
	}
	if a.Creds != "" {
		opts = append(opts, nats.UserCredentials(a.Creds))
	}
	if a.User != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.CA != "" {
		opts = append(opts, nats.RootCAs(a.CA))
	}
	if a.Cert != "" {
		opts = append(opts, nats.ClientCert(a.Cert, a.Key))
	}
	return opts
}

// Redact hides the password of every URL in a comma-separated list of NATS URLs,
// for error messages and logs.
func Redact(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				p = u.Redacted()
			}
		} else if err != nil && strings.Contains(p, "@") {
			p = "(a URL that does not parse)"
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}
