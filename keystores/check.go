package keystores

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Check validates in as of now and returns every problem it finds.
//
// Errors (joined; test them with errors.Is against the Err* values):
//   - a PEM input or block that does not parse (ErrUnparsable, ErrEncryptedKey),
//     or a chain without a key or the reverse (ErrMissingInput, ErrNoInputs);
//   - a key that does not match the leaf, i.e. the first chain certificate
//     (ErrKeyMismatch);
//   - a chain certificate not signed by the one after it (ErrChainOrder);
//   - any certificate, chain or CA, outside its validity period
//     (ErrExpired, ErrNotYetValid).
//
// Warnings: a leaf expiring within ExpiryWarningWindow; a CAs certificate
// that is not marked as a CA; a chain whose last certificate is not issued by
// any of the given CAs (only when both are given).
//
// Warnings are returned even when err is non-nil, except when an input does
// not parse, in which case nothing else is checked.
//
// Check does not verify revocation, host names, key usages, name constraints
// or that the chain ends at a publicly trusted root: a gateway keystore often
// uses a private CA, and the gateway enforces its own policy.
func Check(in Inputs, now time.Time) (warnings []string, err error) {
	p, err := parseInputs(in)
	if err != nil {
		return nil, err
	}
	problems := structuralProblems(p)
	problems = append(problems, validityProblems(inputChain, p.chain, now)...)
	problems = append(problems, validityProblems(inputCAs, p.cas, now)...)
	return collectWarnings(p, now), errors.Join(problems...)
}

// structuralProblems covers what does not depend on the date, so that Build
// can enforce it too.
func structuralProblems(p parsedInputs) []error {
	var problems []error
	if p.hasKeyPair() {
		if err := checkKeyMatchesLeaf(p.key, p.chain); err != nil {
			problems = append(problems, err)
		}
	}
	return append(problems, chainOrderProblems(p.chain)...)
}

func checkKeyMatchesLeaf(key crypto.Signer, chain []*x509.Certificate) error {
	if len(chain) == 0 || publicKeysEqual(key.Public(), chain[0].PublicKey) {
		return nil
	}
	hint := ""
	for i, cert := range chain[1:] {
		if publicKeysEqual(key.Public(), cert.PublicKey) {
			hint = fmt.Sprintf("; it matches certificate %d (%s), but the leaf must come first", i+2, describe(cert))
			break
		}
	}
	return fmt.Errorf("%s: %w (certificate 1, %s)%s", inputKey, ErrKeyMismatch, describe(chain[0]), hint)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	// Every public key type in the standard library has this method.
	withEqual, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && withEqual.Equal(b)
}

func chainOrderProblems(chain []*x509.Certificate) []error {
	var problems []error
	for i := 0; i+1 < len(chain); i++ {
		child, parent := chain[i], chain[i+1]
		if err := child.CheckSignatureFrom(parent); err != nil {
			problems = append(problems, fmt.Errorf("%s: certificate %d (%s) is not signed by certificate %d (%s)%s: %w: %w",
				inputChain, i+1, describe(child), i+2, describe(parent), actualIssuerHint(chain, i), ErrChainOrder, err))
		}
	}
	return problems
}

// actualIssuerHint points at the certificate that did sign chain[i], because
// "out of order" is far easier to fix when you know where the issuer is.
func actualIssuerHint(chain []*x509.Certificate, i int) string {
	for j, candidate := range chain {
		if j != i && j != i+1 && chain[i].CheckSignatureFrom(candidate) == nil {
			return fmt.Sprintf(" (it is signed by certificate %d)", j+1)
		}
	}
	return ""
}

// validityProblems names each certificate that is not valid at now; input, when not
// empty, names where the certificates came from.
func validityProblems(input string, certs []*x509.Certificate, now time.Time) []error {
	var problems []error
	for i, cert := range certs {
		var reason error
		switch {
		case now.Before(cert.NotBefore):
			reason = ErrNotYetValid
		case now.After(cert.NotAfter):
			reason = ErrExpired
		default:
			continue
		}
		if input != "" {
			reason = fmt.Errorf("%s: certificate %d (%s): %w", input, i+1, describe(cert), reason)
		} else {
			reason = fmt.Errorf("certificate %d (%s): %w", i+1, describe(cert), reason)
		}
		problems = append(problems, fmt.Errorf("%w: valid from %s to %s, now is %s",
			reason, formatTime(cert.NotBefore), formatTime(cert.NotAfter), formatTime(now)))
	}
	return problems
}

func collectWarnings(p parsedInputs, now time.Time) []string {
	var warnings []string
	if len(p.chain) > 0 {
		if w := leafExpiryWarning(p.chain[0], now); w != "" {
			warnings = append(warnings, w)
		}
		if len(p.cas) > 0 {
			if w := unanchoredChainWarning(p.chain, p.cas); w != "" {
				warnings = append(warnings, w)
			}
		} else if w := incompleteChainWarning(p.chain); w != "" {
			warnings = append(warnings, w)
		}
	}
	return append(warnings, nonCAWarnings(p.cas)...)
}

// incompleteChainWarning names the issuer of a leaf given without its chain. Clients
// that do not hold that intermediate cannot build a path to their root, and a gateway
// sends the chain as the keystore holds it. A chain that ends at a CA (the root left
// out, as is usual) or at a self-signed leaf is fine; and clients may hold the
// intermediate after all, hence only a warning.
func incompleteChainWarning(chain []*x509.Certificate) string {
	top := chain[len(chain)-1]
	if top.IsCA || bytes.Equal(top.RawIssuer, top.RawSubject) && top.CheckSignatureFrom(top) == nil {
		return ""
	}
	return fmt.Sprintf("%s: the chain ends at %s, issued by %q, which the chain does not hold: add that intermediate certificate after it, unless every client already holds it",
		inputChain, describe(top), top.Issuer.String())
}

func leafExpiryWarning(leaf *x509.Certificate, now time.Time) string {
	remaining := leaf.NotAfter.Sub(now)
	if remaining < 0 || remaining >= ExpiryWarningWindow {
		return "" // already an error, or far enough away
	}
	return fmt.Sprintf("%s: leaf certificate (%s) expires in %s, at %s",
		inputChain, describe(leaf), formatRemaining(remaining), formatTime(leaf.NotAfter))
}

// unanchoredChainWarning is only a warning: the gateway may trust the chain's
// root through a truststore other than the one being built.
func unanchoredChainWarning(chain, cas []*x509.Certificate) string {
	top := chain[len(chain)-1]
	for _, ca := range cas {
		if bytes.Equal(top.Raw, ca.Raw) || top.CheckSignatureFrom(ca) == nil {
			return ""
		}
	}
	return fmt.Sprintf("%s: last certificate (%s) is neither one of the CAs nor issued by one of them", inputChain, describe(top))
}

// nonCAWarnings is only a warning: pinning a self-signed server certificate
// in a truststore is legitimate, if unusual.
func nonCAWarnings(cas []*x509.Certificate) []string {
	var warnings []string
	for i, cert := range cas {
		if !cert.IsCA {
			warnings = append(warnings, fmt.Sprintf("%s: certificate %d (%s) is not a CA certificate", inputCAs, i+1, describe(cert)))
		}
	}
	return warnings
}

// describe names a certificate for humans. Certificates that identify
// themselves only through SANs have an empty subject, hence the fallback.
func describe(cert *x509.Certificate) string {
	if subject := cert.Subject.String(); subject != "" {
		return subject
	}
	if len(cert.DNSNames) > 0 {
		return "empty subject, DNS:" + cert.DNSNames[0]
	}
	return fmt.Sprintf("empty subject, serial %s", cert.SerialNumber)
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func formatRemaining(d time.Duration) string {
	days := int(d / (24 * time.Hour))
	switch days {
	case 0:
		return "less than a day"
	case 1:
		return "1 day"
	default:
		return fmt.Sprintf("%d days", days)
	}
}
