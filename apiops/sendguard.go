package apiops

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// ErrNotSent is wrapped by Do's error for a request its send guard stopped: nothing
// of it reached APIOps.
var ErrNotSent = errors.New("not sent")

type sendGuardKey struct{}

// WithSendGuard returns a context whose requests the client sends only while guard
// returns nil. The client asks right before each request goes out, after any wait for
// a token, and again after dialing a new connection: a worker passes its lease check,
// so that a process frozen during one of those waits sends nothing when it thaws. A
// request already being written cannot be recalled.
func WithSendGuard(ctx context.Context, guard func() error) context.Context {
	return context.WithValue(ctx, sendGuardKey{}, guard)
}

// checkSend asks ctx's send guard, if any.
func checkSend(ctx context.Context) error {
	guard, _ := ctx.Value(sendGuardKey{}).(func() error)
	if guard == nil {
		return nil
	}
	if err := guard(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	return nil
}

// guardedDial is dial, then the send guard: a request that waited for a new
// connection is not sent if its guard refuses by then. (On https the TLS handshake
// follows the dial, and its few milliseconds are not guarded.)
func guardedDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := checkSend(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return conn, nil
	}
}
