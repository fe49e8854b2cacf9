// Command apiops-worker executes APIOps commands from NATS JetStream; see README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// CA roots for images without a system trust store (FROM scratch): used only when
	// the system has none.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/apiops-worker/apiops-worker/internal/programs/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}
