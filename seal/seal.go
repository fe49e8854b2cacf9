// Package seal seals command secrets for an apiops-worker's public curve key and opens
// them with the worker's keys (docs/contract.md, "Sealed secrets").
//
// A publisher seals: Seal, or For with (*messages.Command).SealSecrets. The worker
// opens: a Keyring (or DirKeys, a Keyring re-read from a directory) is the
// messages.Opener that messages.DecodeWith uses.
//
// Keys are nkeys curve keys (xkeys): X25519 key agreement with XSalsa20-Poly1305, in
// nkeys' xkv1 box format, so any xkeys implementation can seal for a worker. Public
// keys start with X, seeds with SX.
//
// Errors name keys and files, never a secret or a seed.
package seal

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/apiops-worker/apiops-worker/messages"
)

// CheckPublicKey returns an error when key is not a public curve key (X…, with a
// valid checksum).
func CheckPublicKey(key string) error {
	if key == "" {
		return errors.New("no public curve key given")
	}
	if !nkeys.IsValidPublicCurveKey(key) {
		return fmt.Errorf("%s is not a public curve key (56 characters starting with X, with a valid checksum)", quoteKey(key))
	}
	return nil
}

// Seal seals c for the public curve key recipient with a key pair made for this value
// alone: From is that pair's public key, and its private key is dropped.
func Seal(recipient string, c messages.SealedContent) (messages.Sealed, error) {
	if err := CheckPublicKey(recipient); err != nil {
		return messages.Sealed{}, fmt.Errorf("seal: %w", err)
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return messages.Sealed{}, fmt.Errorf("seal: make a key pair: %w", err)
	}
	defer kp.Wipe()
	from, err := kp.PublicKey()
	if err != nil {
		return messages.Sealed{}, fmt.Errorf("seal: %w", err)
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return messages.Sealed{}, fmt.Errorf("seal: encode the content: %w", err)
	}
	box, err := kp.Seal(plain, recipient)
	clear(plain)
	if err != nil {
		return messages.Sealed{}, fmt.Errorf("seal for key %s: %w", recipient, err)
	}
	return messages.Sealed{Box: base64.StdEncoding.EncodeToString(box), For: recipient, From: from}, nil
}

// For returns a function that seals for recipient, for (*messages.Command).SealSecrets:
//
//	err := cmd.SealSecrets(seal.For(workerKey))
func For(recipient string) func(messages.SealedContent) (messages.Sealed, error) {
	return func(c messages.SealedContent) (messages.Sealed, error) { return Seal(recipient, c) }
}

// quoteKey shows what was given as a key in an error when it may be shown: a string
// of the public key alphabet that is not a seed, quoted unless it has a key's form.
// Anything else (a seed, or something pasted by mistake) is described, not shown.
func quoteKey(key string) string {
	switch {
	case len(key) > 0 && key[0] == 'S':
		return fmt.Sprintf("the %d characters given, starting with S (a seed?),", len(key))
	case len(key) > 64 || strings.IndexFunc(key, func(r rune) bool {
		return (r < 'A' || r > 'Z') && (r < '2' || r > '7')
	}) >= 0:
		return fmt.Sprintf("the %d characters given", len(key))
	case len(key) == 56 && key[0] == 'X':
		return key
	}
	return fmt.Sprintf("%q", key)
}
