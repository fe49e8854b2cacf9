package ctl

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

const sealUsage = `usage: apiopsctl seal keygen FILE
       apiopsctl seal pubkey [flags]

Keystore passwords and files may be sealed for the workers' public curve key, so that
they never rest in plaintext in NATS: see submit --seal.

  keygen FILE  writes a new worker key (a curve seed, SX…) to FILE, readable by its
               owner only, and prints its public key (X…). It does not overwrite FILE.
               Put FILE in the workers' --seal-keys directory: the file whose name
               sorts last holds the key they announce (2026-11.xk, then 2027-05.xk).
  pubkey       prints the public key the running workers announce (NATS service
               discovery, $SRV.INFO.apiops-worker): the key submit --seal seals for.
               It prints a key every instance holds: during a rotation, the old
               key until every instance has the new one; when instances announce
               different keys, it lists them on stderr.
` + connUsage

// Seal runs "apiopsctl seal" with args (after "seal") and returns the exit status.
func Seal(ctx context.Context, args []string, env IO) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, sealUsage)
		return 1
	}
	switch args[0] {
	case "keygen":
		return sealKeygen(args[1:], env)
	case "pubkey":
		return sealPubkey(ctx, args[1:], env)
	case "-h", "--help", "help":
		fmt.Fprint(env.Stderr, sealUsage)
		return 0
	default:
		return fail(env, "seal", fmt.Errorf("unknown subcommand %q: want keygen or pubkey (see apiopsctl seal -h)", args[0]))
	}
}

func sealKeygen(args []string, env IO) int {
	const name = "seal keygen"
	fs := newFlagSet("apiopsctl "+name, sealUsage, env)
	positional, err := parseArgs(fs, args)
	if err != nil {
		return flagFailure(err)
	}
	if len(positional) != 1 {
		return fail(env, name, errors.New("want one FILE to write the new key to (see apiopsctl seal -h)"))
	}
	pub, err := seal.GenerateKeyFile(positional[0])
	if err != nil {
		return fail(env, name, err)
	}
	fmt.Fprintln(env.Stdout, pub)
	return 0
}

func sealPubkey(ctx context.Context, args []string, env IO) int {
	const name = "seal pubkey"
	fs := newFlagSet("apiopsctl "+name, sealUsage, env)
	var conn connFlags
	conn.register(fs, env)
	positional, err := parseArgs(fs, args)
	if err != nil {
		return flagFailure(err)
	}
	if len(positional) > 0 {
		return fail(env, name, fmt.Errorf("unexpected argument %q (see apiopsctl seal -h)", positional[0]))
	}
	nc, err := conn.connect()
	if err != nil {
		return fail(env, name, err)
	}
	defer nc.Close()
	key, instances, err := client.DiscoverSealKey(ctx, nc, conn.prefix)
	if err != nil {
		return fail(env, name, err)
	}
	fmt.Fprintln(env.Stdout, key)
	if disagree(key, instances) {
		fmt.Fprintf(env.Stderr, "apiopsctl %s: the %d instances announce different keys; printed one that every instance holds. By current key:\n%s",
			name, len(instances), describeInstances(instances))
	}
	return 0
}

// disagree reports whether some instance announces another key than key, or none.
func disagree(key string, instances []client.Instance) bool {
	return slices.ContainsFunc(instances, func(in client.Instance) bool { return in.SealKey != key })
}

// describeInstances lists the instances that announce each key, a line per key, the
// key most announce first.
func describeInstances(instances []client.Instance) string {
	byKey := map[string][]string{}
	for _, in := range instances {
		byKey[in.SealKey] = append(byKey[in.SealKey], in.ID+" (version "+cmp.Or(in.Version, "unknown")+")")
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(byKey[b]), len(byKey[a])), strings.Compare(b, a))
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %s\n", cmp.Or(k, "(no key)"), strings.Join(byKey[k], ", "))
	}
	return b.String()
}

// sealOption is the client option that --seal and --seal-key (APIOPS_SEAL_KEY) ask
// for, or nil to publish secrets as they are. An explicit --seal wins over the
// environment's key; both flags together are an error.
func sealOption(discover bool, key string, keyFlagGiven bool) (client.Option, error) {
	switch {
	case discover && keyFlagGiven:
		return nil, errors.New("give --seal (seal for the key the workers announce) or --seal-key, not both")
	case discover:
		return client.WithDiscoveredSealKey(), nil
	case key != "":
		if err := seal.CheckPublicKey(key); err != nil {
			return nil, fmt.Errorf("--seal-key (APIOPS_SEAL_KEY): %w", err)
		}
		return client.WithSealKey(key), nil
	}
	return nil, nil
}

// flagGiven reports whether the flag name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

var secretType = reflect.TypeFor[messages.Secret]()

// sealedForOther returns the first secret of cmd that is sealed for a key other than
// key, as a rejection names it, or nil.
func sealedForOther(cmd *messages.Command, key string) *messages.Error {
	var found *messages.Error
	walkSecrets(reflect.ValueOf(cmd.Params), "params", func(path string, s messages.Secret) bool {
		if sealed, ok := s.Sealed(); ok && sealed.For != key {
			found = &messages.Error{Code: messages.CodeInvalidCommand, Field: path,
				Message: fmt.Sprintf("is sealed for key %s, not for --seal-key %s", sealed.For, key)}
		}
		return found == nil
	})
	return found
}

// walkSecrets calls fn with every secret in v and its path (field names as in JSON)
// until fn returns false.
func walkSecrets(v reflect.Value, path string, fn func(path string, s messages.Secret) bool) bool {
	switch {
	case v.Type() == secretType:
		return fn(path, v.Interface().(messages.Secret))
	case v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface:
		return v.IsNil() || walkSecrets(v.Elem(), path, fn)
	case v.Kind() == reflect.Slice:
		for i := range v.Len() {
			if !walkSecrets(v.Index(i), fmt.Sprintf("%s[%d]", path, i), fn) {
				return false
			}
		}
	case v.Kind() == reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if !walkSecrets(v.Field(i), path+"."+cmp.Or(name, f.Name), fn) {
				return false
			}
		}
	}
	return true
}
