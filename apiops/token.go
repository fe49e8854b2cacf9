package apiops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenSource supplies the bearer token for each request.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// A Refresher is a TokenSource that can fetch a token again. Client.Do calls Refresh
// with the token APIOps refused, then sends the request once more. Only that token is
// dropped: when many requests were refused the same token at once, the first refresh
// serves them all.
type Refresher interface {
	Refresh(rejected string)
}

// StaticToken is a token that never changes, e.g. from APIOPS_TOKEN.
type StaticToken string

func (t StaticToken) Token(context.Context) (string, error) {
	if t == "" {
		return "", errors.New("APIOps token is empty")
	}
	return string(t), nil
}

// FileToken reads the token from a file, such as a mounted Kubernetes Secret, so that
// the token can be rotated without a restart. The file is read again when the cached
// copy is older than MaxAge, or at the next Token after Refresh. Surrounding whitespace
// is ignored.
type FileToken struct {
	path   string
	maxAge time.Duration
	now    func() time.Time

	mu     sync.Mutex
	token  string
	readAt time.Time
}

// DefaultTokenMaxAge is how long FileToken trusts its cached copy of the file.
const DefaultTokenMaxAge = 10 * time.Second

// NewFileToken returns a FileToken for path. The file is not read until Token.
func NewFileToken(path string) *FileToken {
	return &FileToken{path: path, maxAge: DefaultTokenMaxAge, now: time.Now}
}

func (f *FileToken) Token(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.token != "" && now.Sub(f.readAt) < f.maxAge {
		return f.token, nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("read APIOps token file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("APIOps token file %s is empty", f.path)
	}
	f.token, f.readAt = token, now
	return token, nil
}

// Refresh makes the next Token read the file again, unless it was read again since
// rejected was handed out.
func (f *FileToken) Refresh(rejected string) {
	f.mu.Lock()
	if f.token == rejected {
		f.token = ""
	}
	f.mu.Unlock()
}
