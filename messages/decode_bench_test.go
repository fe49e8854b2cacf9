package messages_test

import (
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
)

// BenchmarkDecode measures the worker's per-command decoding of the bench's command
// and of the largest example (a keystore with its file).
func BenchmarkDecode(b *testing.B) {
	examples := exampleCommands(b)
	for _, name := range []string{"credential.truststore.set", "keystore.create"} {
		data := examples[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := messages.Decode("MyProject", name, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
