// Command apiops-worker executes APIOps commands from NATS JetStream; see README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/apiops-worker/apiops-worker/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}
