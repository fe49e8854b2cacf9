// Package client publishes apiops-worker commands on NATS JetStream and collects their
// results, for Go services that drive the worker (see docs/contract.md).
//
// A Client validates every command before it publishes it, so an invalid command never
// reaches the stream; the error is then a *messages.Error naming the code and field.
// Errors never hold a command's secrets (passwords, keystore files).
//
// # Inboxes
//
// The worker sends a command's result to its replyTo only when that lies under
// _INBOX.<the command's project>. (see docs/contract.md), so Request, Submit and
// SubmitPlan wait for results on _INBOX.<project>.<unique token>, whatever the
// connection's inbox prefix. JetStream's acknowledgement of every publish comes to
// the connection's inbox. With one NATS account per team (deploy/nats/accounts.conf),
// both arrive in the team's account and the default prefix works. Where teams share
// an account and each may subscribe only under its own prefix, connect with
// nats.CustomInboxPrefix("_INBOX.<project>") and name the same prefix with
// WithInboxPrefix: New then refuses a connection made without it, and a refused
// inbox is reported at once instead of every publish timing out.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/apiops-worker/apiops-worker/internal/tracecontext"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

// maxInFlight bounds the asynchronous publishes of one Submit awaiting JetStream's ack.
const maxInFlight = 256

// flushTimeout bounds the wait for the server to take a reply subscription.
const flushTimeout = 10 * time.Second

// Client publishes commands to the worker's command stream. It is safe for concurrent
// use; it does not own the connection.
type Client struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	subjects messages.Subjects
	sealKey  string // seal secrets for this key, when set
	// ackInboxOK is set once the server took a subscription under the connection's
	// inbox prefix, where JetStream's acknowledgements come.
	ackInboxOK atomic.Bool

	// The workers' largest command (see commandLimit): given, or discovered when
	// first needed, and asked again after askAgain when no worker announced it.
	sizeMu         sync.Mutex
	maxCommandSize int
	sizeGiven      bool
	sizeAnnounced  bool
	askAgain       time.Time
}

type options struct {
	prefix, inboxPrefix string
	sealKey             string
	discoverSealKey     bool
	maxCommandSize      int
}

// Option configures a Client.
type Option func(*options)

// WithPrefix sets the subject prefix the worker is configured with (default
// messages.DefaultPrefix, "apiops"). It may hold dots.
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// WithInboxPrefix names the inbox prefix this publisher's permissions allow it to
// subscribe under, e.g. "_INBOX.TeamA". The connection must have been made with
// nats.CustomInboxPrefix(prefix): JetStream's acknowledgements use the connection's
// prefix, which a client cannot change. New reports a connection that differs.
// (Results come under _INBOX.<project>. whatever the prefix: see Inboxes.)
func WithInboxPrefix(prefix string) Option {
	return func(o *options) { o.inboxPrefix = prefix }
}

// WithSealKey seals every plaintext secret (password, keystore file) for the workers'
// public curve key publicKey (X…) before publishing, each with a key pair of its own
// (see seal.Seal). Secrets that are sealed already are published as they are.
func WithSealKey(publicKey string) Option {
	return func(o *options) { o.sealKey = publicKey }
}

// WithDiscoveredSealKey is WithSealKey with the key the running workers announce: New
// asks NATS service discovery (see DiscoverSealKey, which takes up to a second) and
// fails when no worker announces one.
//
// New asks once. A Client kept while the workers rotate their key goes on sealing for
// the key it was given, which works for as long as the workers keep that key; make a
// new Client to take up the new one.
func WithDiscoveredSealKey() Option {
	return func(o *options) { o.discoverSealKey = true }
}

// WithMaxCommandSize sets the largest command the workers take, in bytes with its
// headers (their --max-command-size), instead of asking them (see Publish).
func WithMaxCommandSize(n int) Option {
	return func(o *options) { o.maxCommandSize = n }
}

// New returns a Client that publishes on nc.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, errors.New("client: no NATS connection")
	}
	o := options{prefix: messages.DefaultPrefix}
	for _, opt := range opts {
		opt(&o)
	}
	if problem := messages.CheckPrefix(o.prefix); problem != "" {
		return nil, fmt.Errorf("client: prefix %q %s", o.prefix, problem)
	}
	if o.maxCommandSize < 0 {
		return nil, fmt.Errorf("client: max command size %d: want a positive number of bytes", o.maxCommandSize)
	}
	if o.inboxPrefix != "" {
		if got := inboxPrefixOf(nc); got != o.inboxPrefix {
			return nil, fmt.Errorf("client: the connection's inbox prefix is %q, not %q: connect with nats.CustomInboxPrefix(%q)", got, o.inboxPrefix, o.inboxPrefix)
		}
	}
	switch {
	case o.sealKey != "" && o.discoverSealKey:
		return nil, errors.New("client: give WithSealKey or WithDiscoveredSealKey, not both")
	case o.sealKey != "":
		if err := seal.CheckPublicKey(o.sealKey); err != nil {
			return nil, fmt.Errorf("client: seal key: %w", err)
		}
	case o.discoverSealKey:
		ctx, cancel := context.WithTimeout(context.Background(), discoverTimeout)
		key, _, err := DiscoverSealKey(ctx, nc, o.prefix)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		o.sealKey = key
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Client{nc: nc, js: js, subjects: messages.Subjects{Prefix: o.prefix}, sealKey: o.sealKey,
		maxCommandSize: o.maxCommandSize, sizeGiven: o.maxCommandSize > 0}, nil
}

// SealKey returns the public key the Client seals secrets for, or "" when it does not
// seal them.
func (c *Client) SealKey() string { return c.sealKey }

// Publish validates cmd and publishes its wire form to the command subject of its
// project and type (Type may be left empty: it follows from Params) with the header
// Nats-Msg-Id set to <project>/<id> (messages.MsgID), and waits for JetStream to
// store it.
//
// duplicate is true when JetStream dropped the message because a message with the same
// Nats-Msg-Id was published within the stream's duplicate window; the worker then sees
// nothing new. That message may be this command published before, or another
// publisher's that reused the Nats-Msg-Id: publish the command again without
// Nats-Msg-Id, as Request and Submit do, and the worker executes it or answers from
// the result it stored for this project and id. An invalid command is not published;
// the error wraps its *messages.Error.
//
// Nor is a command too large for the workers or the connection: the error then wraps
// a *TooLargeError naming its size and the limit, the smaller of the connection's
// maximum payload and the largest command the workers take. That is asked of them
// through NATS service discovery (see DiscoverMaxCommandSize; up to a second) the first
// time a command is larger than 16 KiB, the least a worker may be configured to take,
// unless given with WithMaxCommandSize; when no worker announces it, it is
// DefaultMaxCommandSize, and asked again a minute later. Request, Submit and
// SubmitPlan check every command so too.
func (c *Client) Publish(ctx context.Context, cmd *messages.Command) (duplicate bool, err error) {
	var replyTo string
	if cmd != nil {
		replyTo = cmd.ReplyTo
	}
	msg, err := c.message(ctx, cmd, replyTo)
	if err != nil {
		return false, err
	}
	ack, err := c.js.PublishMsg(ctx, msg)
	if err != nil {
		return false, c.publishError(cmd, err)
	}
	return ack.Duplicate, nil
}

// Request publishes cmd with a fresh inbox under _INBOX.<its project>. as its replyTo
// (replacing any replyTo it has; cmd itself is not changed) and waits for its result
// until ctx ends. A message on the inbox that is not a result of cmd's project, type
// and id is ignored.
//
// When JetStream reports the publish as a duplicate (the Nats-Msg-Id was published
// within the duplicate window, so nothing new reaches the worker), Request publishes
// the command once more without Nats-Msg-Id: the worker does not execute an id twice,
// it answers from the result it stored.
func (c *Client) Request(ctx context.Context, cmd *messages.Command) (*messages.Result, error) {
	replyTo := replyInbox(cmd, nuid.Next())
	msg, err := c.message(ctx, cmd, replyTo)
	if err != nil {
		return nil, err
	}
	subs, err := c.subscribeInboxes(ctx, []inbox{{subject: replyTo, project: cmd.Project}})
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", label(cmd), err)
	}
	sub := subs[0]
	defer func() { _ = sub.Unsubscribe() }()

	if err := c.publishAgainIfDuplicate(ctx, cmd, msg); err != nil {
		return nil, err
	}
	for {
		reply, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("request %s: no result: %w", label(cmd), err)
		}
		if r, ok := resultOf(cmd, reply); ok {
			return r, nil
		}
	}
}

// Submit publishes many commands with one reply subscription per project among them:
// command i is published with replyTo _INBOX.<its project>.<token>.<i> (cmds are not
// changed). Every command is validated, and measured (see Publish), before any is
// published; when one is invalid or too large, none is.
//
// Commands are published asynchronously, several awaiting JetStream's ack at a time;
// a duplicate is published again without Nats-Msg-Id, as Request does. onResult (may
// be nil) is called with each command's index and result as the result arrives, in
// arrival order, one call at a time, on the goroutine that called Submit.
//
// Submit returns nil when every command has its result. When ctx ends first, or
// publishing fails, the error says how many results are missing and wraps the cause
// (e.g. context.DeadlineExceeded).
func (c *Client) Submit(ctx context.Context, cmds []*messages.Command, onResult func(i int, r *messages.Result)) error {
	if len(cmds) == 0 {
		return nil
	}
	token := nuid.Next()
	msgs := make([]*nats.Msg, len(cmds))
	replies := make([]string, len(cmds))
	var inboxes []inbox
	subscribed := map[string]bool{}
	for i, cmd := range cmds {
		base := replyInbox(cmd, token)
		replies[i] = base + "." + strconv.Itoa(i)
		msg, err := c.message(ctx, cmd, replies[i])
		if err != nil {
			return fmt.Errorf("command %d: %w", i, err)
		}
		msgs[i] = msg
		if !subscribed[base] {
			subscribed[base] = true
			inboxes = append(inboxes, inbox{subject: base + ".*", project: cmd.Project})
		}
	}
	subs, err := c.subscribeInboxes(ctx, inboxes)
	if err != nil {
		return err
	}
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	// The results of one batch are bounded by its size; never drop one as a slow consumer.
	for _, sub := range subs {
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			return fmt.Errorf("subscribe to the reply inbox: %w", err)
		}
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	published := make(chan struct{})
	go func() {
		defer close(published)
		if err := c.publishAll(runCtx, cmds, msgs); err != nil {
			cancel(err)
		}
	}()
	defer func() {
		cancel(nil)
		<-published
	}()

	next := nextOfAny(runCtx, subs)
	got := make([]bool, len(cmds))
	missing := len(cmds)
	for missing > 0 {
		reply, err := next()
		if err != nil {
			if runCtx.Err() != nil {
				err = context.Cause(runCtx)
			}
			return fmt.Errorf("%d of %d commands have no result: %w", missing, len(cmds), err)
		}
		i, err := strconv.Atoi(reply.Subject[strings.LastIndexByte(reply.Subject, '.')+1:])
		if err != nil || i < 0 || i >= len(cmds) || got[i] || reply.Subject != replies[i] {
			continue // not one of ours, or a second copy
		}
		r, ok := resultOf(cmds[i], reply)
		if !ok {
			continue
		}
		got[i] = true
		missing--
		if onResult != nil {
			onResult(i, r)
		}
	}
	return nil
}

// nextOfAny returns a function that waits for the next message on any of subs until
// ctx ends. With several, a goroutine per subscription hands its messages on; they
// end with ctx.
func nextOfAny(ctx context.Context, subs []*nats.Subscription) func() (*nats.Msg, error) {
	if len(subs) == 1 {
		return func() (*nats.Msg, error) { return subs[0].NextMsgWithContext(ctx) }
	}
	msgs := make(chan *nats.Msg)
	errs := make(chan error, len(subs))
	for _, sub := range subs {
		go func() {
			for {
				m, err := sub.NextMsgWithContext(ctx)
				if err != nil {
					errs <- err
					return
				}
				select {
				case msgs <- m:
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				}
			}
		}()
	}
	return func() (*nats.Msg, error) {
		select {
		case m := <-msgs:
			return m, nil
		case err := <-errs:
			return nil, err
		}
	}
}

// pending is a publish awaiting its ack.
type pending struct {
	i      int
	future jetstream.PubAckFuture
	again  bool // published again without Nats-Msg-Id
}

// publishAll publishes msgs asynchronously, at most maxInFlight awaiting their ack,
// publishing a duplicate once more without Nats-Msg-Id.
func (c *Client) publishAll(ctx context.Context, cmds []*messages.Command, msgs []*nats.Msg) error {
	queue := make([]pending, 0, min(len(msgs), maxInFlight))
	publish := func(i int, msg *nats.Msg, again bool) error {
		f, err := c.js.PublishMsgAsync(msg)
		if err != nil {
			return c.publishError(cmds[i], err)
		}
		queue = append(queue, pending{i: i, future: f, again: again})
		return nil
	}
	// settle waits for the oldest publish's ack.
	settle := func() error {
		p := queue[0]
		queue = queue[1:]
		var ack *jetstream.PubAck
		select {
		case ack = <-p.future.Ok():
		case err := <-p.future.Err():
			return c.publishError(cmds[p.i], err)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if ack.Duplicate && !p.again {
			return publish(p.i, withoutMsgID(msgs[p.i]), true)
		}
		return nil
	}
	for i, msg := range msgs {
		for len(queue) >= maxInFlight {
			if err := settle(); err != nil {
				return err
			}
		}
		if err := publish(i, msg, false); err != nil {
			return err
		}
	}
	for len(queue) > 0 {
		if err := settle(); err != nil {
			return err
		}
	}
	return nil
}

// message validates cmd with replyTo in place of its own and builds the message that
// carries it, with the trace of ctx, if any, as traceparent and tracestate.
func (c *Client) message(ctx context.Context, cmd *messages.Command, replyTo string) (*nats.Msg, error) {
	if cmd == nil {
		return nil, errors.New("publish: nil command")
	}
	withReply := *cmd
	withReply.ReplyTo = replyTo
	if err := withReply.Validate(); err != nil {
		return nil, fmt.Errorf("publish %s: %w", label(cmd), err)
	}
	data, err := withReply.Encode()
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", label(cmd), err)
	}
	if c.sealKey != "" {
		if data, err = sealWire(&withReply, data, c.sealKey); err != nil {
			return nil, fmt.Errorf("publish %s: %w", label(cmd), err)
		}
	}
	msg := nats.NewMsg(c.subjects.Command(cmd.Project, typeOf(cmd)))
	msg.Data = data
	msg.Header.Set(messages.HeaderMsgID, messages.MsgID(cmd.Project, cmd.ID))
	tracecontext.Inject(ctx, msg.Header)
	if err := c.checkSize(ctx, msg); err != nil {
		return nil, fmt.Errorf("publish %s: %w", label(cmd), err)
	}
	return msg, nil
}

// Check reports whether cmd would be refused, without publishing anything: the error
// wraps its *messages.Error when it is invalid, or a *TooLargeError when it is too
// large (see Publish), measured with a reply inbox as Submit gives it. It seals
// secrets as publishing would, to measure the command as published.
func (c *Client) Check(ctx context.Context, cmd *messages.Command) error {
	// Submit's inbox ends in the command's index: seven digits cover any batch.
	_, err := c.message(ctx, cmd, replyInbox(cmd, nuid.Next())+".0000000")
	return err
}

// TooLargeError is the error of a command too large to publish (see Publish). The
// command was not published.
type TooLargeError struct {
	// Size is the message that would carry the command, its headers included, and
	// Limit the largest one allowed, in bytes.
	Size, Limit int
	// LimitOf names what sets Limit, e.g. "the workers' --max-command-size".
	LimitOf string
}

// Error is short enough for a table's cell: "command too large: 528,718 bytes, over
// the 524,288 (512 KiB) the workers' --max-command-size allows".
func (e *TooLargeError) Error() string {
	limit := grouped(e.Limit)
	if e.Limit >= 1024 {
		unit, div := "KiB", 1024.0
		if e.Limit >= 1<<20 {
			unit, div = "MiB", 1<<20
		}
		limit += " (" + strings.TrimSuffix(strconv.FormatFloat(float64(e.Limit)/div, 'f', 1, 64), ".0") + " " + unit + ")"
	}
	return fmt.Sprintf("command too large: %s bytes, over the %s %s allows", grouped(e.Size), limit, e.LimitOf)
}

// grouped is n with its digits grouped by commas: 524,288.
func grouped(n int) string {
	digits := strconv.Itoa(n)
	var b strings.Builder
	for i, d := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return b.String()
}

// minMaxCommandSize is the smallest largest command a worker may be configured with
// (worker.Config): a command no larger fits every worker, so its size needs no asking.
const minMaxCommandSize = 16 << 10

// askAgainAfter is how long a Client goes by DefaultMaxCommandSize when no worker
// announced its own, before it asks again: a worker may have started since.
const askAgainAfter = time.Minute

// checkSize refuses msg when it is larger than the connection's maximum payload or the
// workers' largest command, whichever is smaller: the server or the command stream
// would refuse it with a bare "maximum payload exceeded" or "message size exceeds
// maximum allowed", naming neither size.
func (c *Client) checkSize(ctx context.Context, msg *nats.Msg) error {
	size := len(msg.Data) + headerSize(msg.Header)
	limit, limitOf := int(c.nc.MaxPayload()), "the NATS server's max_payload"
	if size <= minMaxCommandSize && size <= limit {
		return nil
	}
	workers, workersOf, err := c.commandLimit(ctx)
	if err != nil {
		return err
	}
	if workers <= limit {
		limit, limitOf = workers, workersOf
	}
	if size > limit {
		return &TooLargeError{Size: size, Limit: limit, LimitOf: limitOf}
	}
	return nil
}

// commandLimit is the largest command the workers take, and what says so: given with
// WithMaxCommandSize, or asked of the workers once (see Publish). The error is only
// ctx's, when it ended while asking.
func (c *Client) commandLimit(ctx context.Context) (int, string, error) {
	c.sizeMu.Lock()
	defer c.sizeMu.Unlock()
	switch {
	case c.sizeGiven:
		return c.maxCommandSize, "WithMaxCommandSize", nil
	case c.sizeAnnounced:
		return c.maxCommandSize, "the workers' --max-command-size", nil
	case c.maxCommandSize > 0 && time.Now().Before(c.askAgain):
		return c.maxCommandSize, "the workers' default --max-command-size", nil
	}
	askCtx, cancel := context.WithTimeout(ctx, discoverTimeout)
	size, announced, err := DiscoverMaxCommandSize(askCtx, c.nc, c.subjects.Prefix)
	cancel()
	if err != nil && ctx.Err() != nil {
		return 0, "", fmt.Errorf("ask the workers for their largest command: %w", context.Cause(ctx))
	}
	c.maxCommandSize, c.sizeAnnounced = size, announced
	if !announced {
		c.askAgain = time.Now().Add(askAgainAfter)
		return size, "the workers' default --max-command-size", nil
	}
	return size, "the workers' --max-command-size", nil
}

// headerSize is the size of h as NATS sends it, which counts against its maximum
// payload and the stream's maximum message size as the data does.
func headerSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(textproto.TrimString(v)) + len("\r\n")
		}
	}
	return n
}

// sealWire returns data, the wire form of the valid command cmd, with every plaintext
// secret sealed for key, and clears data. The params are decoded afresh from data, so
// that sealing does not change the caller's.
func sealWire(cmd *messages.Command, data []byte, key string) ([]byte, error) {
	defer clear(data)
	cp, err := messages.Decode(cmd.Project, typeOf(cmd), data)
	if err != nil {
		return nil, err
	}
	if err := cp.SealSecrets(seal.For(key)); err != nil { // a plan's steps included
		return nil, err
	}
	return cp.Encode()
}

// publishAgainIfDuplicate publishes msg, and publishes it again without Nats-Msg-Id
// when JetStream reports it as a duplicate: the worker then answers from the result it
// stored for the id, or executes it if the duplicate was another publisher's.
func (c *Client) publishAgainIfDuplicate(ctx context.Context, cmd *messages.Command, msg *nats.Msg) error {
	ack, err := c.js.PublishMsg(ctx, msg)
	if err != nil {
		return c.publishError(cmd, err)
	}
	if ack.Duplicate {
		if _, err := c.js.PublishMsg(ctx, withoutMsgID(msg)); err != nil {
			return fmt.Errorf("publish %s again (a duplicate): %w", label(cmd), err)
		}
	}
	return nil
}

// withoutMsgID is msg without the Nats-Msg-Id header, for publishing a duplicate again.
func withoutMsgID(msg *nats.Msg) *nats.Msg {
	again := nats.NewMsg(msg.Subject)
	again.Data = msg.Data
	for k, v := range msg.Header {
		if k != messages.HeaderMsgID {
			again.Header[k] = v
		}
	}
	return again
}

// resultOf decodes reply as the result of cmd. Anything else that reaches the inbox (a
// message that is not a result, or the result of another command that named this
// inbox as its replyTo) is not cmd's result.
func resultOf(cmd *messages.Command, reply *nats.Msg) (*messages.Result, bool) {
	var r messages.Result
	if json.Unmarshal(reply.Data, &r) != nil {
		return nil, false
	}
	return &r, r.ID == cmd.ID && r.Project == cmd.Project && r.Type == typeOf(cmd)
}

// typeOf is cmd's type, from Params when Type is empty.
func typeOf(cmd *messages.Command) string {
	if cmd.Type != "" {
		return cmd.Type
	}
	if _, ok := cmd.Plan(); ok {
		return messages.PlanType
	}
	ct, _ := messages.TypeOf(cmd.Params)
	return ct.Name
}

// replyInbox is where the worker may send the result of cmd, with token making it
// this publisher's: _INBOX.<project>.<token> (messages.ReplyInbox). The worker takes no
// replyTo outside its command's project's inbox, so that no project can have its
// results sent where another project's publishers receive theirs.
func replyInbox(cmd *messages.Command, token string) string {
	project := ""
	if cmd != nil {
		project = cmd.Project
	}
	return messages.ReplyInbox(project) + token
}

// inbox is a reply subject to subscribe to, and the project whose results come there.
type inbox struct{ subject, project string }

// subscribeInboxes subscribes to reply inboxes and waits for the server to take the
// subscriptions, so that an inbox outside this publisher's permissions is an error now,
// not a wait for a result that cannot arrive. Until the server once took it, it tries a
// subscription under the connection's inbox prefix too: JetStream acknowledges every
// publish there, and a refusal would otherwise show only as publishes that time out.
func (c *Client) subscribeInboxes(ctx context.Context, inboxes []inbox) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	var probe *nats.Subscription
	var err error
	if !c.ackInboxOK.Load() {
		probe, err = c.nc.SubscribeSync(c.nc.NewInbox())
	}
	for _, in := range inboxes {
		if err != nil {
			break
		}
		var sub *nats.Subscription
		if sub, err = c.nc.SubscribeSync(in.subject); err == nil {
			subs = append(subs, sub)
		}
	}
	if err == nil {
		flushCtx, cancel := context.WithTimeout(ctx, flushTimeout)
		err = c.nc.FlushWithContext(flushCtx)
		cancel()
	}
	if err == nil {
		err = c.inboxRefused(inboxes, probe)
	}
	if probe != nil {
		_ = probe.Unsubscribe()
		if err == nil {
			c.ackInboxOK.Store(true)
		}
	}
	if err != nil {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		return nil, fmt.Errorf("subscribe to the reply inbox: %w", err)
	}
	return subs, nil
}

// inboxRefused returns the server's refusal of a subscription to one of inboxes or to
// probe (may be nil), if it refused one; the server reports it before it answers the
// flush that follows.
func (c *Client) inboxRefused(inboxes []inbox, probe *nats.Subscription) error {
	last := c.nc.LastError()
	if !errors.Is(last, nats.ErrPermissionViolation) {
		return nil
	}
	for _, in := range inboxes {
		if strings.Contains(last.Error(), `"`+in.subject+`"`) {
			return fmt.Errorf("%w: the worker sends the results of project %q only under %s, and this user may not subscribe there: connect as the project's team (deploy/nats/README.md)",
				last, in.project, messages.ReplyInbox(in.project))
		}
	}
	if probe != nil && strings.Contains(last.Error(), `"`+probe.Subject+`"`) {
		return fmt.Errorf("%w: this user may not subscribe under the inbox prefix %q, where JetStream acknowledges publishes; connect with nats.CustomInboxPrefix set to one it may (apiopsctl: --inbox-prefix, NATS_INBOX_PREFIX)",
			last, inboxPrefixOf(c.nc))
	}
	return nil
}

// publishError explains a failed publish: when JetStream's acknowledgement could not
// reach this connection's inbox, waiting longer would not help.
func (c *Client) publishError(cmd *messages.Command, err error) error {
	if last := c.nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), inboxPrefixOf(c.nc)+".") {
		return fmt.Errorf("publish %s: %w (JetStream's acknowledgement is sent to the connection's inbox, and %v; connect with nats.CustomInboxPrefix set to a prefix this user may subscribe under)",
			label(cmd), err, last)
	}
	return fmt.Errorf("publish %s: %w", label(cmd), err)
}

// inboxPrefixOf is the prefix of nc's inboxes.
func inboxPrefixOf(nc *nats.Conn) string {
	if p := nc.Opts.InboxPrefix; p != "" {
		return p
	}
	return strings.TrimSuffix(nats.InboxPrefix, ".")
}

// label names a command in an error: its id, quoted and shortened when it is not a
// plain one.
func label(cmd *messages.Command) string {
	if cmd == nil || cmd.ID == "" {
		return "command without id"
	}
	plain := len(cmd.ID) <= messages.MaxIDLength && strings.IndexFunc(cmd.ID, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r))
	}) < 0
	if plain {
		return cmd.ID
	}
	id := []rune(cmd.ID)
	if len(id) > 64 {
		return strconv.Quote(string(id[:64]) + "…")
	}
	return strconv.Quote(cmd.ID)
}
