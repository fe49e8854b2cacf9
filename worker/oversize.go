package worker

import (
	"errors"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/messages"
)

// An outcome too large to store (a result, its record, its dead letter) would be
// retried for ever, holding its command's place. It is stored shortened instead; the
// dead letter is made to fit by construction (see deadLetter).

// errTooLarge: a write of the worker's own records failed for its size.
var errTooLarge = errors.New("too large to store")

func tooLarge(err error) bool {
	return errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum)
}

// maxShortenedText bounds each text of a shortened result.
const maxShortenedText = 512

// shortened is res with every text bounded and no per-environment messages: what it
// says of statuses, codes and environments stays.
func shortened(res *messages.Result) *messages.Result {
	out := *res
	if res.Error != nil {
		e := *res.Error
		if len(e.Message) > maxShortenedText {
			e.Message = strings.ToValidUTF8(e.Message[:maxShortenedText], "") + "…"
		}
		out.Error = &e
	}
	if d := res.DeploymentResult; d != nil {
		short := &messages.DeploymentResult{Success: d.Success}
		for _, env := range d.EnvironmentResults {
			short.EnvironmentResults = append(short.EnvironmentResults, messages.EnvironmentResult{EnvironmentName: env.EnvironmentName, Success: env.Success})
		}
		out.DeploymentResult = short
	}
	out.Steps = shortenedAll(res.Steps)
	out.OnFailure = shortenedAll(res.OnFailure)
	out.Warnings = append(res.Warnings[:len(res.Warnings):len(res.Warnings)], "this result was shortened to fit: its texts are cut and per-environment messages left out")
	return &out
}

func shortenedAll(results []messages.Result) []messages.Result {
	if results == nil {
		return nil
	}
	out := make([]messages.Result, len(results))
	for i := range results {
		out[i] = *shortened(&results[i])
		out[i].Warnings = results[i].Warnings
	}
	return out
}
