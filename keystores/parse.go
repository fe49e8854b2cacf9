package keystores

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Names used in messages; they match the Inputs fields an operator filled.
const (
	inputChain = "chain"
	inputKey   = "key"
	inputCAs   = "CAs"
)

const pemBeginMarker = "-----BEGIN"

// parsedInputs is Inputs decoded; a nil or empty field was not given.
type parsedInputs struct {
	chain []*x509.Certificate
	key   crypto.Signer
	cas   []*x509.Certificate
}

func (p parsedInputs) hasKeyPair() bool { return p.key != nil }

// parseInputs decodes every input and reports all parse problems together.
func parseInputs(in Inputs) (parsedInputs, error) {
	var p parsedInputs
	var errs []error
	var err error
	if p.chain, err = parseCertificates(inputChain, in.Chain); err != nil {
		errs = append(errs, err)
	}
	if p.key, err = parsePrivateKey(in.Key); err != nil {
		errs = append(errs, err)
	}
	if p.cas, err = parseCertificates(inputCAs, in.CAs); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return parsedInputs{}, errors.Join(errs...)
	}
	return p, requireUsableCombination(in)
}

// requireUsableCombination looks at which inputs were given, not at their
// content, so that it can run even when parsing failed elsewhere.
func requireUsableCombination(in Inputs) error {
	hasChain, hasKey, hasCAs := len(in.Chain) > 0, len(in.Key) > 0, len(in.CAs) > 0
	switch {
	case hasChain && !hasKey:
		return fmt.Errorf("%s: %w: a chain needs its private key", inputKey, ErrMissingInput)
	case hasKey && !hasChain:
		return fmt.Errorf("%s: %w: a private key needs its certificate chain", inputChain, ErrMissingInput)
	case !hasChain && !hasCAs:
		return ErrNoInputs
	}
	return nil
}

// parseCertificates returns nil for an absent input; any non-CERTIFICATE
// block is an error because a stray key in a certificate file is a mistake
// worth stopping for.
func parseCertificates(input string, data []byte) ([]*x509.Certificate, error) {
	if len(data) == 0 {
		return nil, nil
	}
	blocks, err := decodePEMBlocks(input, data)
	if err != nil {
		return nil, err
	}
	certs := make([]*x509.Certificate, 0, len(blocks))
	for i, block := range blocks {
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d: %w: type %q, want CERTIFICATE", input, i+1, ErrUnparsable, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w: %w", input, i+1, ErrUnparsable, err)
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// decodePEMBlocks decodes every PEM block in data. Text between blocks is
// allowed because tools such as `openssl pkcs12 -nodes` write "Bag
// Attributes" there. pem.Decode silently skips a damaged block and returns
// the next good one, which would renumber the blocks and hide the damage, so
// each step checks that exactly one BEGIN line was consumed.
func decodePEMBlocks(input string, data []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	rest := data
	for {
		start := bytes.Index(rest, []byte(pemBeginMarker))
		if start < 0 {
			break
		}
		block, next := pem.Decode(rest[start:])
		consumed := rest[start : len(rest)-len(next)]
		if block == nil || bytes.Count(consumed, []byte(pemBeginMarker)) != 1 {
			return nil, fmt.Errorf("%s: PEM block %d: %w: damaged block (bad base64, header or END line)", input, len(blocks)+1, ErrUnparsable)
		}
		blocks = append(blocks, block)
		rest = next
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%s: %w: no PEM block found", input, ErrUnparsable)
	}
	return blocks, nil
}

// parsePrivateKey returns nil for an absent input. The decoded DER of every
// block is cleared before returning, whatever the outcome.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	if len(data) == 0 {
		return nil, nil
	}
	blocks, err := decodePEMBlocks(inputKey, data)
	if err != nil {
		return nil, err
	}
	defer clearBlocks(blocks)

	var keyBlocks []int
	for i, block := range blocks {
		if block.Type != "EC PARAMETERS" {
			keyBlocks = append(keyBlocks, i)
		}
	}
	if len(keyBlocks) != 1 {
		return nil, fmt.Errorf("%s: %w: want exactly one private key block, found %d", inputKey, ErrUnparsable, len(keyBlocks))
	}
	return decodePrivateKeyBlock(keyBlocks[0]+1, blocks[keyBlocks[0]])
}

func clearBlocks(blocks []*pem.Block) {
	for _, block := range blocks {
		clear(block.Bytes)
	}
}

// decodePrivateKeyBlock deliberately drops the parser's error text: it is
// about the structure of a secret, and the format name is what an operator
// needs to act on.
func decodePrivateKeyBlock(number int, block *pem.Block) (crypto.Signer, error) {
	where := fmt.Sprintf("%s: PEM block %d (%s)", inputKey, number, block.Type)
	if isEncryptedPEM(block) {
		return nil, fmt.Errorf("%s: %w: decrypt it first, e.g. `openssl pkey -in enc.pem -out key.pem`", where, ErrEncryptedKey)
	}
	var key any
	var err error
	var format string
	switch block.Type {
	case "PRIVATE KEY":
		format = "PKCS#8"
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		format = "PKCS#1 RSA"
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		format = "SEC1 EC"
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: %w: unsupported block type, want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", where, ErrUnparsable)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: not a valid %s private key", where, ErrUnparsable, format)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		// e.g. an X25519 key in PKCS#8: it cannot belong to a certificate we can use.
		return nil, fmt.Errorf("%s: %w: key type %T cannot sign", where, ErrUnparsable, key)
	}
	return signer, nil
}

func isEncryptedPEM(block *pem.Block) bool {
	return block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED")
}
