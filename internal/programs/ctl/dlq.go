package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/internal/jsread"
	"github.com/apiops-worker/apiops-worker/internal/tracecontext"
	"github.com/apiops-worker/apiops-worker/messages"
)

const dlqUsage = `usage: apiopsctl dlq list|replay|purge [flags]

Dead letters are copies of the commands that did not succeed, kept in the dead-letter
stream with headers saying why. Secret values in them are "[REDACTED]".

  list     prints the selected dead letters: a table, or with --output json one object
           per line {seq, subject, headers, command}
  replay   publishes each selected dead letter again as a new command on its original
           subject, with the id <id>:replay-<n>, the same correlationId and the header
           Apiops-Replay-Of: <id>, then removes it from the dead-letter stream. A finished
           id is never executed twice, hence the new id. A copy whose secrets were
           redacted cannot be replayed: send that command again with its secrets.
  purge    removes the selected dead letters

selection (replay and purge need --seq, --id or --all):
  --seq LIST       stream sequences, comma-separated
  --id ID          the command id
  --all            every dead letter that the other selectors let through
  --project NAME   only this project's
  --type TYPE      only this command type (may hold NATS wildcards)
  --status LIST    only these statuses, comma-separated

flags:
  --output FORMAT  list: table (default) or json
  --stream NAME    the dead-letter stream (default APIOPS_DEAD)
` + connUsage + `
exit status: 0 when everything selected was done; 2 when some dead letters could not be
replayed (redacted, no id); 1 on usage or connection errors.
`

// deadLetter is one message of the dead-letter stream.
type deadLetter struct {
	Seq     uint64          `json:"seq"`
	Subject string          `json:"subject"`
	Headers nats.Header     `json:"headers"`
	Command json.RawMessage `json:"command"`
	raw     []byte
}

// DLQ runs "apiopsctl dlq" with args (after "dlq") and returns the exit status.
func DLQ(ctx context.Context, args []string, env IO) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay" && args[0] != "purge") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(env.Stdout, dlqUsage)
			return 0
		}
		fmt.Fprint(env.Stderr, dlqUsage)
		return 1
	}
	action, name := args[0], "dlq "+args[0]
	fs := newFlagSet("apiopsctl "+name, dlqUsage, env)
	var conn connFlags
	conn.register(fs, env)
	seqList := fs.String("seq", "", "")
	id := fs.String("id", "", "")
	all := fs.Bool("all", false, "")
	project := fs.String("project", "", "")
	typeName := fs.String("type", "", "")
	statusList := fs.String("status", "", "")
	output := fs.String("output", "table", "")
	stream := fs.String("stream", "APIOPS_DEAD", "")
	positional, err := parseArgs(fs, args[1:])
	if err != nil {
		return flagFailure(err)
	}
	sel := selection{id: *id}
	switch {
	case len(positional) > 0:
		return fail(env, name, fmt.Errorf("unexpected argument %q", positional[0]))
	case *output != "table" && *output != "json":
		return fail(env, name, fmt.Errorf("--output %q: want table or json", *output))
	case action != "list" && *seqList == "" && *id == "" && !*all:
		return fail(env, name, errors.New("select what to "+action+" with --seq, --id or --all"))
	}
	if *seqList != "" {
		if sel.seqs, err = parseSeqs(*seqList); err != nil {
			return fail(env, name, err)
		}
	}
	if sel.statuses, err = parseFilters(*project, *typeName, *statusList); err != nil {
		return fail(env, name, err)
	}
	nc, err := conn.connect()
	if err != nil {
		return fail(env, name, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(env, name, err)
	}
	s, err := js.Stream(ctx, *stream)
	if err != nil {
		return fail(env, name, fmt.Errorf("stream %s: %w", *stream, err))
	}
	subject := messages.Subjects{Prefix: conn.prefix}.DeadLetter(orWildcard(*project, "*"), orWildcard(*typeName, ">"))
	letters, err := readDeadLetters(ctx, s, subject, sel)
	if err != nil {
		return fail(env, name, err)
	}
	switch action {
	case "list":
		err = listDeadLetters(env, *output, letters)
	case "purge":
		for _, d := range letters {
			if err = s.DeleteMsg(ctx, d.Seq); err != nil {
				err = fmt.Errorf("remove dead letter %d: %w", d.Seq, err)
				break
			}
		}
		if err == nil {
			fmt.Fprintf(env.Stderr, "removed %d dead letters\n", len(letters))
		}
	case "replay":
		var refused int
		refused, err = replayDeadLetters(ctx, js, s, messages.Subjects{Prefix: conn.prefix}, env, letters)
		if err == nil && refused > 0 {
			return 2
		}
	}
	if err != nil {
		return fail(env, name, err)
	}
	return 0
}

// selection is what a dead letter must match beyond the subject filter.
type selection struct {
	seqs     map[uint64]bool
	id       string
	statuses map[messages.Status]bool
}

func (s selection) match(d *deadLetter) bool {
	return (s.seqs == nil || s.seqs[d.Seq]) &&
		(s.id == "" || d.Headers.Get(messages.HeaderCommandID) == s.id) &&
		(s.statuses == nil || s.statuses[messages.Status(d.Headers.Get(messages.HeaderStatus))])
}

func parseSeqs(list string) (map[uint64]bool, error) {
	seqs := make(map[uint64]bool)
	for s := range strings.SplitSeq(list, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("--seq: %q is not a stream sequence", s)
		}
		seqs[n] = true
	}
	return seqs, nil
}

// readDeadLetters reads the stream's messages on subject, as they are now.
func readDeadLetters(ctx context.Context, s jetstream.Stream, subject string, sel selection) ([]*deadLetter, error) {
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	var out []*deadLetter
	err = jsread.Pending(ctx, c, func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
		d := &deadLetter{Seq: meta.Sequence.Stream, Subject: m.Subject(), Headers: m.Headers(), raw: m.Data()}
		d.Command = m.Data()
		if !json.Valid(d.Command) {
			d.Command, _ = json.Marshal(string(m.Data()))
		}
		if sel.match(d) {
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	return out, nil
}

func listDeadLetters(env IO, output string, letters []*deadLetter) error {
	if output == "json" {
		enc := json.NewEncoder(env.Stdout)
		for _, d := range letters {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSUBJECT\tID\tSTATUS\tATTEMPTS\tREDACTED\tERROR")
	for _, d := range letters {
		h := d.Headers
		// "code: message (field)" as in the results tables. Dead letters of workers
		// before Apiops-Error-Field have no field: the cell is then code and message.
		e := messages.Error{Code: h.Get(messages.HeaderErrorCode), Message: h.Get(messages.HeaderError), Field: h.Get(messages.HeaderErrorField)}
		errText := ""
		if e != (messages.Error{}) {
			errText = errorCell(&e)
		}
		redacted := "no"
		if h.Get(messages.HeaderRedacted) == "true" {
			redacted = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Subject, orDash(h.Get(messages.HeaderCommandID)),
			orDash(h.Get(messages.HeaderStatus)), orDash(h.Get(messages.HeaderAttempts)), redacted, errText)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "%d dead letters\n", len(letters))
	return nil
}

var replaySuffix = regexp.MustCompile(`^(.*):replay-([0-9]+)$`)

// replayID is the id a replayed command gets: <id>:replay-1, or the next number for a
// dead letter that was itself a replay.
func replayID(id string) string {
	if m := replaySuffix.FindStringSubmatch(id); m != nil {
		n, err := strconv.Atoi(m[2])
		if err == nil {
			return m[1] + ":replay-" + strconv.Itoa(n+1)
		}
	}
	return id + ":replay-1"
}

// replayDeadLetters republishes each letter that can be, and removes it once JetStream
// stored the new command. It returns how many it refused.
func replayDeadLetters(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, subjects messages.Subjects, env IO, letters []*deadLetter) (refused int, err error) {
	for _, d := range letters {
		id := d.Headers.Get(messages.HeaderCommandID)
		reason := ""
		newID := replayID(id)
		project, _, subjectErr := subjects.ParseCommand(d.Headers.Get(messages.HeaderOriginalSubject))
		var body map[string]json.RawMessage
		switch {
		case d.Headers.Get(messages.HeaderRedacted) == "true":
			reason = "its secrets were redacted in the dead letter; send the command again with its secrets"
		case d.Headers.Get(messages.HeaderTruncated) != "":
			reason = "the dead letter keeps only the start of a command of " + d.Headers.Get(messages.HeaderTruncated) + " bytes; send the command again"
		case id == "":
			reason = "it has no valid id; fix it and send it again"
		case len(newID) > messages.MaxIDLength:
			reason = fmt.Sprintf("the replay id %q would be longer than %d characters", newID, messages.MaxIDLength)
		case subjectErr != nil:
			reason = "it does not name its original subject: " + subjectErr.Error()
		case json.Unmarshal(d.raw, &body) != nil:
			reason = "it is not a JSON object"
		}
		if reason != "" {
			fmt.Fprintf(env.Stderr, "seq %d (%s): not replayed: %s\n", d.Seq, orDash(id), reason)
			refused++
			continue
		}
		body["id"], _ = json.Marshal(newID)
		data, err := json.Marshal(body)
		if err != nil {
			return refused, err
		}
		msg := &nats.Msg{Subject: d.Headers.Get(messages.HeaderOriginalSubject), Data: data, Header: nats.Header{}}
		msg.Header.Set(messages.HeaderMsgID, messages.MsgID(project, newID))
		msg.Header.Set(messages.HeaderReplayOf, id)
		tracecontext.Inject(ctx, msg.Header) // the replay is part of its operator's trace, not the original's
		ack, err := js.PublishMsg(ctx, msg)
		if err == nil && ack.Duplicate {
			// Another message holds this Nats-Msg-Id in the duplicate window (maybe
			// another project's): without the header the worker still gets the replay,
			// and answers from its record if this replay id had already run.
			msg.Header.Del(messages.HeaderMsgID)
			_, err = js.PublishMsg(ctx, msg)
		}
		if err != nil {
			return refused, fmt.Errorf("replay dead letter %d as %s: %w", d.Seq, newID, err)
		}
		if err := s.DeleteMsg(ctx, d.Seq); err != nil {
			return refused, fmt.Errorf("replayed dead letter %d as %s, but cannot remove it: %w", d.Seq, newID, err)
		}
		fmt.Fprintf(env.Stdout, "seq %d: %s replayed as %s on %s\n", d.Seq, id, newID, msg.Subject)
	}
	return refused, nil
}
