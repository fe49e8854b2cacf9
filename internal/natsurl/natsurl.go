// Package natsurl handles NATS server URLs given by users.
package natsurl

import (
	"net/url"
	"strings"
)

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
