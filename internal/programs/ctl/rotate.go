package ctl

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apiops-worker/apiops-worker/keystores"
	"github.com/apiops-worker/apiops-worker/messages"
)

const rotateUsage = `usage: apiopsctl rotate [flags]

Builds a keystore (from --cert and --key) or a truststore (from --ca only) out of PEM
files, after checking them (key matches the leaf, chain order, validity dates), and
runs the rotation plan that puts it in place, in this order:

  1. keystore.create  --keystore, one file per --env (the same bytes)
  2. credential.keystore.set    for each --keystore-for
  3. credential.truststore.set  for each --truststore-for
  4. proxy.mtls.update          for each --mtls-proxy: keyStoreName, or
                                trustStoreName for a truststore (the worker adds
                                the id for servers that take ids)
  5. keystore.delete            --delete-old, when given

With --stages ENV,ENV,… (and --mtls-proxy) the proxies change one environment at a
time, in that order: for each stage, a proxy.verify that the route is live before the
change (its revision is the one a failure rolls back to), the mTLS change saved, a
proxy.deploy to that environment alone, and a proxy.verify that it is live after. When a stage fails,
only that stage's environment is rolled back (proxy.rollback); the stages before it
passed their verify and keep the new keystore, and the later ones were never touched.
Credential secrets deploy to every environment at once (APIOps offers no other way),
so --stages refuses --keystore-for and --truststore-for.

A check that fails exits 2 with every problem found; warnings (a leaf expiring within
30 days, a leaf without its intermediate, …) go to stderr. When a later step fails, the
plan deletes the keystore it created (unless --keep-on-failure); a create that fails
(the name is taken) deletes nothing.

The same rotate run again is the same plan: its id comes from its inputs and the
keystore is built the same, byte for byte, so the worker answers with the stored
result of a run that finished (marked replayed) and runs nothing twice; to run a
rotation again after it failed, give --id. The keystore's password is the one line of
--password-file, or derived from the private key (a truststore, which has no private
key, needs --password-file); a derived password is never printed: it exists only
inside the keystore.create step.

flags:
  --project NAME        the project (required)
  --keystore NAME       the new keystore's name (required)
  --type KIND           PKCS12 (default) or JKS
  --cert FILE           the certificate chain, leaf first (with --key: a keystore)
  --key FILE            the leaf's unencrypted private key
  --ca FILE             CA certificates (alone: a truststore)
  --alias NAME          the key entry's alias in a JKS keystore, and the prefix of a
                        truststore's entries (NAME-1, NAME-2, …) (default: client for
                        a keystore, ca for a truststore); a PKCS12 keystore's key
                        entry has no alias
  --env NAME            an environment to deploy to; repeatable, at least one
  --password-file FILE  the keystore's password: the file's one line
  --keystore-for USER   set USER's keystore to the new one; repeatable
  --truststore-for USER set USER's truststore to the new one; repeatable
  --mtls-proxy NAME     point API proxy NAME's mTLS at the new one; repeatable
  --delete-old NAME     delete keystore NAME as the last step
  --keep-on-failure     keep the new keystore when a later step fails
  --stages LIST         roll out to these environments one at a time, verifying each
                        (comma-separated, each one of --env; needs --mtls-proxy)
  --verify-timeout D    how long each verify waits for the route to be live (default
                        2m, at most 1h)
  --id ID               the plan's id (default: rotate-<keystore>-<digest of the inputs>)
  --dry-run             print the plan as JSON, secrets redacted, and publish nothing
  --timeout D, --output FORMAT, --seal, --seal-key KEY: as for apiopsctl plan
` + connUsage + `
exit status: 0 when the plan succeeded (or --dry-run printed it); 2 when the checks
failed or the plan did not succeed; 1 on usage, input or connection errors.
`

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// Rotate runs "apiopsctl rotate" with args and returns the exit status.
func Rotate(ctx context.Context, args []string, env IO) int {
	const name = "rotate"
	fs := newFlagSet("apiopsctl "+name, rotateUsage, env)
	var run planRun
	run.conn.register(fs, env)
	apply := run.register(fs, env)
	project := fs.String("project", "", "")
	keystoreName := fs.String("keystore", "", "")
	kind := fs.String("type", keystores.KindPKCS12, "")
	certFile := fs.String("cert", "", "")
	keyFile := fs.String("key", "", "")
	caFile := fs.String("ca", "", "")
	alias := fs.String("alias", "", "")
	passwordFile := fs.String("password-file", "", "")
	deleteOld := fs.String("delete-old", "", "")
	id := fs.String("id", "", "")
	keepOnFailure := fs.Bool("keep-on-failure", false, "")
	dryRun := fs.Bool("dry-run", false, "")
	stages := fs.String("stages", "", "")
	verifyTimeout := fs.Duration("verify-timeout", messages.DefaultVerifyTimeout*time.Second, "")
	var envs, keystoreFor, truststoreFor, proxies listFlag
	fs.Var(&envs, "env", "")
	fs.Var(&keystoreFor, "keystore-for", "")
	fs.Var(&truststoreFor, "truststore-for", "")
	fs.Var(&proxies, "mtls-proxy", "")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return flagFailure(err)
	}
	apply()
	run.sealKeyGiven = flagGiven(fs, "seal-key")
	if err := checkRotateFlags(fs, positional, *project, *keystoreName, *certFile, *keyFile, *caFile, envs, keystoreFor, truststoreFor); err != nil {
		return fail(env, name, err)
	}
	*kind = strings.ToUpper(*kind)
	if *kind != keystores.KindPKCS12 && *kind != keystores.KindJKS {
		return fail(env, name, fmt.Errorf("--type %q: want PKCS12 or JKS", *kind))
	}
	if *alias != "" && *kind == keystores.KindPKCS12 && *certFile != "" {
		return fail(env, name, errors.New("--alias: a PKCS12 keystore's key entry carries no alias (gateways take its one key entry): drop --alias, or give --type JKS"))
	}
	stageList, err := checkStages(*stages, envs, proxies, keystoreFor, truststoreFor, *verifyTimeout)
	if err != nil {
		return fail(env, name, err)
	}
	if *caFile != "" && *passwordFile == "" {
		return fail(env, name, errors.New("--password-file is required with --ca: a truststore holds public certificates only, so a password derived from them would be known to whoever has them"))
	}
	if !*dryRun {
		if err := run.check(); err != nil {
			return fail(env, name, err)
		}
	} else if err := run.conn.check(); err != nil {
		return fail(env, name, err)
	}

	var in keystores.Inputs
	for _, f := range []struct {
		flag, path string
		dst        *[]byte
	}{{"--cert", *certFile, &in.Chain}, {"--key", *keyFile, &in.Key}, {"--ca", *caFile, &in.CAs}} {
		if f.path == "" {
			continue
		}
		if *f.dst, err = os.ReadFile(f.path); err != nil {
			return fail(env, name, fmt.Errorf("%s: %w", f.flag, err))
		}
	}
	defer clear(in.Key)
	trust := *certFile == ""
	warnings, checkErr := keystores.Check(in, time.Now())
	for _, w := range warnings {
		fmt.Fprintf(env.Stderr, "apiopsctl %s: warning: %s\n", name, w)
	}
	if checkErr != nil {
		fmt.Fprintf(env.Stderr, "apiopsctl %s: the PEM inputs fail their checks; nothing was published:\n", name)
		for line := range strings.Lines(checkErr.Error()) {
			fmt.Fprintf(env.Stderr, "  %s\n", strings.TrimRight(line, "\n"))
		}
		return 2
	}

	var password []byte
	derived := *passwordFile == ""
	if derived {
		password, err = keystores.DerivePassword(in, *project+"/"+*keystoreName)
	} else {
		password, err = keystores.ReadPasswordFile(*passwordFile)
	}
	if err != nil {
		return fail(env, name, fmt.Errorf("--password-file: %w", err))
	}
	defer clear(password)
	if *alias == "" {
		*alias = "client"
		if trust {
			*alias = "ca"
		}
	}
	file, err := keystores.BuildReproducible(in, *kind, password, *alias)
	if err != nil {
		return fail(env, name, fmt.Errorf("build the %s: %w", storeNoun(trust), err))
	}
	defer clear(file)

	r := rotation{project: *project, keystore: *keystoreName, kind: *kind, alias: *alias, trust: trust, file: file, password: password,
		envs: envs, keystoreFor: keystoreFor, truststoreFor: truststoreFor, proxies: proxies, deleteOld: *deleteOld, undo: !*keepOnFailure,
		stages: stageList, verifyTimeout: int(verifyTimeout.Seconds())}
	planID := *id
	if planID == "" {
		planID = r.defaultID(in)
	}
	plan, err := r.plan(planID)
	if err != nil {
		return fail(env, name, err)
	}
	if code, refused := refusePlanKeystores(env, name, run.output, plan, true); refused {
		return code
	}
	if derived {
		fmt.Fprintf(env.Stderr, "apiopsctl %s: the keystore's password was derived from its private key; it is not shown here, stored or logged anywhere: it is only inside the keystore.create step (give --password-file to choose one)\n", name)
	}
	if *dryRun {
		return printDryRun(env, name, plan)
	}
	return run.submit(ctx, name, plan, env)
}

func storeNoun(trust bool) string {
	if trust {
		return "truststore"
	}
	return "keystore"
}

func checkRotateFlags(fs *flag.FlagSet, positional []string, project, keystoreName, cert, key, ca string, envs, keystoreFor, truststoreFor []string) error {
	switch {
	case len(positional) > 0:
		return fmt.Errorf("unexpected argument %q: rotate takes flags only (see apiopsctl rotate -h)", positional[0])
	case project == "":
		return errors.New("--project is required")
	case keystoreName == "":
		return errors.New("--keystore is required: the new keystore's name")
	case len(envs) == 0:
		return errors.New("--env is required: at least one environment to deploy the keystore to")
	case cert == "" && key == "" && ca == "":
		return errors.New("give --cert and --key for a keystore, or --ca for a truststore")
	case (cert == "") != (key == ""):
		return errors.New("--cert and --key go together: a keystore needs the chain and its key")
	case cert != "" && ca != "":
		return errors.New("give --cert and --key for a keystore, or --ca for a truststore, not both: a keystore and a truststore are separate keystores (run rotate twice)")
	case cert == "" && len(keystoreFor) > 0:
		return errors.New("--keystore-for needs a keystore (--cert and --key); --ca builds a truststore: use --truststore-for")
	case cert != "" && len(truststoreFor) > 0:
		return errors.New("--truststore-for needs a truststore (--ca only); --cert and --key build a keystore: use --keystore-for")
	}
	seen := map[string]bool{}
	for _, e := range envs {
		if seen[e] {
			return fmt.Errorf("--env %q is given twice", e)
		}
		seen[e] = true
	}
	return nil
}

// rotation is what a rotate builds its plan from.
type rotation struct {
	project, keystore, kind, alias string
	trust                          bool
	file, password                 []byte
	envs, keystoreFor              []string
	truststoreFor, proxies         []string
	deleteOld                      string
	undo                           bool     // delete the new keystore when a later step fails
	stages                         []string // environments to roll out to one at a time
	verifyTimeout                  int      // seconds, for a staged rollout's verifies
}

// defaultID is rotate-<keystore>-<digest>: the digest of everything the plan is made
// of but its secrets (the password, the file and the private key), so that the same
// rotation run again is the same plan and a changed one is another.
func (r rotation) defaultID(in keystores.Inputs) string {
	h := sha256.New()
	for _, part := range [][]string{{r.project, r.keystore, r.kind, r.alias, r.deleteOld, strconv.FormatBool(r.undo), strconv.Itoa(r.verifyTimeout)},
		r.envs, r.stages, r.keystoreFor, r.truststoreFor, r.proxies, {string(in.Chain), string(in.CAs)}} {
		for _, s := range part {
			fmt.Fprintf(h, "%d:%s", len(s), s)
		}
		h.Write([]byte{0})
	}
	digest := hex.EncodeToString(h.Sum(nil))[:12]
	keystore := r.keystore
	if room := messages.MaxIDLength - len(":undo-100") - len("rotate--") - len(digest); len(keystore) > room {
		keystore = keystore[:room]
	}
	return "rotate-" + keystore + "-" + digest
}

// plan is the plan that creates the keystore, puts it in place and, if a later step
// fails, deletes it again.
func (r rotation) plan(id string) (*messages.Command, error) {
	encoded := base64.StdEncoding.EncodeToString(r.file)
	create := &messages.KeystoreCreate{Name: r.keystore}
	for _, e := range r.envs {
		ke := messages.KeyStoreEnvironment{EnvironmentName: e, File: messages.NewSecret(encoded),
			Password: messages.NewSecret(string(r.password)), KeyStoreType: r.kind}
		if r.kind == keystores.KindJKS && !r.trust {
			ke.Alias = strings.ToLower(r.alias) // JKS lowercases aliases
		}
		create.KeyStoreEnvironmentList = append(create.KeyStoreEnvironmentList, ke)
	}
	steps := []*messages.Command{{Type: "keystore.create", Project: r.project, Params: create}}
	for _, u := range r.keystoreFor {
		steps = append(steps, &messages.Command{Type: "credential.keystore.set", Project: r.project,
			Params: &messages.CredentialKeystoreSet{Username: u, KeystoreName: r.keystore}})
	}
	for _, u := range r.truststoreFor {
		steps = append(steps, &messages.Command{Type: "credential.truststore.set", Project: r.project,
			Params: &messages.CredentialTruststoreSet{Username: u, KeystoreName: r.keystore}})
	}
	if len(r.stages) > 0 {
		return r.stagedPlan(id, steps)
	}
	for _, p := range r.proxies {
		steps = append(steps, r.pointProxy(p))
	}
	if r.deleteOld != "" {
		steps = append(steps, &messages.Command{Type: "keystore.delete", Project: r.project,
			Params: &messages.KeystoreDelete{KeystoreName: r.deleteOld}})
	}
	var undo []*messages.Command
	if r.undo && len(steps) > 1 {
		undo = []*messages.Command{{Type: "keystore.delete", Project: r.project, Params: &messages.KeystoreDelete{KeystoreName: r.keystore}}}
	}
	plan, err := newPlan(id, r.project, "", steps, undo, false)
	if err != nil || undo == nil {
		return plan, err
	}
	plan.Params.(*messages.Plan).OnFailureFrom = 1 // the create that failed made nothing to delete
	if err := plan.Validate(); err != nil {
		return nil, fmt.Errorf("the plan: %w", err)
	}
	return plan, nil
}

// pointProxy is the mTLS change that points proxy p at the new keystore.
func (r rotation) pointProxy(p string) *messages.Command {
	update := &messages.ProxyMTLSUpdate{APIProxyName: p}
	if r.trust {
		update.TrustStoreName = &r.keystore
	} else {
		update.KeyStoreName = &r.keystore
	}
	return &messages.Command{Type: "proxy.mtls.update", Project: r.project, Params: update}
}

// stagedPlan is the plan of a staged rollout: after steps (the keystore's create), for
// each stage, a verify of each proxy that its route is live before, each proxy's mTLS
// change saved, a deploy of each to the stage's environment and a verify of each that
// it is live after. The
// deploy is a step of its own rather than the PATCH's deploy flag: servers of the
// openapi.yaml kind do not report the PATCH's deployment, and the deploy endpoint
// answers with it. A stage's rollbacks run only when a step of that stage failed
// after its baselines; the new keystore is deleted only when no proxy was pointed at
// it yet (a rollback restores what runs, not the proxy's saved settings, which still name
// it; see docs/design/verified-rotation.md).
func (r rotation) stagedPlan(id string, steps []*messages.Command) (*messages.Command, error) {
	verify := func(p, env string, after bool) *messages.Command {
		v := &messages.ProxyVerify{APIProxyName: p, EnvironmentNameList: []string{env}, TimeoutSeconds: r.verifyTimeout, Baseline: !after}
		switch {
		case after && r.trust:
			v.TrustStoreName = &r.keystore
		case after:
			v.KeyStoreName = &r.keystore
		}
		return &messages.Command{Type: "proxy.verify", Project: r.project, Params: v}
	}
	var undo []*messages.Command
	var when [][]int
	var unused []int // the steps whose failure leaves no proxy pointing at the new keystore
	for si, env := range r.stages {
		var changes, deploys, verifies []*messages.Command
		for _, p := range r.proxies {
			steps = append(steps, verify(p, env, false))
			changes = append(changes, r.pointProxy(p))
			deploys = append(deploys, &messages.Command{Type: "proxy.deploy", Project: r.project,
				Params: &messages.ProxyDeploy{APIProxyName: p, EnvironmentName: env}})
			verifies = append(verifies, verify(p, env, true))
			if si == 0 {
				unused = append(unused, len(steps)-1)
			}
		}
		first := len(steps)
		if si == 0 {
			unused = append(unused, first) // the first mTLS change, refused
		}
		steps = slices.Concat(steps, changes, deploys, verifies)
		// A failure anywhere in the stage once a proxy changed rolls back every proxy
		// of the stage: each to what its baseline saw (a proxy not yet deployed there
		// is rolled back to the revision it runs).
		stage := make([]int, 0, len(steps)-first)
		for i := first; i < len(steps); i++ {
			stage = append(stage, i)
		}
		for _, p := range r.proxies {
			undo = append(undo, &messages.Command{Type: "proxy.rollback", Project: r.project,
				Params: &messages.ProxyRollback{APIProxyName: p, EnvironmentName: env}})
			when = append(when, stage)
		}
	}
	if r.deleteOld != "" {
		steps = append(steps, &messages.Command{Type: "keystore.delete", Project: r.project,
			Params: &messages.KeystoreDelete{KeystoreName: r.deleteOld}})
	}
	if r.undo {
		undo = append(undo, &messages.Command{Type: "keystore.delete", Project: r.project, Params: &messages.KeystoreDelete{KeystoreName: r.keystore}})
		when = append(when, unused)
	}
	plan := &messages.Command{ID: id, Type: messages.PlanType, Project: r.project, CorrelationID: id,
		Params: &messages.Plan{Steps: steps, OnFailure: undo, UndoWhen: when, OnFailureFrom: 1}}
	if err := plan.Validate(); err != nil {
		return nil, fmt.Errorf("the plan: %w", err)
	}
	return plan, nil
}

// checkStages reads --stages: environments of --env, each once, with proxies to roll
// out and no credential secrets, which APIOps deploys everywhere at once.
func checkStages(list string, envs, proxies, keystoreFor, truststoreFor []string, timeout time.Duration) ([]string, error) {
	if timeout < time.Second || timeout > messages.MaxVerifyTimeout*time.Second {
		return nil, fmt.Errorf("--verify-timeout %s: want from 1s to 1h", timeout)
	}
	if list == "" {
		return nil, nil
	}
	switch {
	case len(keystoreFor) > 0 || len(truststoreFor) > 0:
		return nil, errors.New("--stages cannot stage --keystore-for or --truststore-for: APIOps deploys a credential's secrets to every environment at once (run those without --stages)")
	case len(proxies) == 0:
		return nil, errors.New("--stages needs --mtls-proxy: what is rolled out one environment at a time is the proxies' mTLS change")
	}
	stages := strings.Split(list, ",")
	seen := map[string]bool{}
	for _, s := range stages {
		switch {
		case !slices.Contains(envs, s):
			return nil, fmt.Errorf("--stages: %q is not one of --env (%s): the keystore has a file only for those", s, strings.Join(envs, ", "))
		case seen[s]:
			return nil, fmt.Errorf("--stages names %q twice", s)
		}
		seen[s] = true
	}
	return stages, nil
}

// printDryRun prints the plan as it would travel, secrets redacted.
func printDryRun(env IO, name string, plan *messages.Command) int {
	data, err := plan.Encode()
	if err != nil {
		return fail(env, name, err)
	}
	redacted, _ := messages.RedactSecrets(data)
	clear(data)
	var out bytes.Buffer
	if err := json.Indent(&out, redacted, "", "  "); err != nil {
		return fail(env, name, err)
	}
	out.WriteByte('\n')
	if _, err := env.Stdout.Write(out.Bytes()); err != nil {
		return fail(env, name, err)
	}
	return 0
}
