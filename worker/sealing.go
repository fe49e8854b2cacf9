package worker

import (
	"errors"

	"github.com/apiops-worker/apiops-worker/messages"
)

// secretOptions is how the worker decodes secrets: sealed ones are opened with its keys
// and validated like plaintext; without keys they cannot be opened, and the command is
// rejected rather than sent to APIOps with an empty secret. See
// docs/design/sealed-secrets.md.
func secretOptions(cfg Config) messages.DecodeOptions {
	opener := cfg.Opener
	if opener == nil {
		opener = noKeys{}
	}
	return messages.DecodeOptions{Opener: opener, RequireSealed: cfg.RequireSealed}
}

type noKeys struct{}

func (noKeys) Open(messages.Sealed) (messages.SealedContent, error) {
	return messages.SealedContent{}, errors.New("this worker has no keys to open sealed secrets (--seal-keys)")
}
