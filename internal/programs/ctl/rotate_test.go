package ctl

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/apiops-worker/apiops-worker/messages"
)

const storePassword = "st0re-pw-41d9"

// pki is a CA and a leaf it issued, as PEM files.
type pki struct {
	ca, leaf, chain, key, otherKey string // file paths
	keyPEM                         []byte
	keyDER                         []byte
	leafCert                       *x509.Certificate
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func certPEM(t *testing.T, tmpl, parent *x509.Certificate, pub, signer any) ([]byte, *x509.Certificate) {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert
}

func keyPEM(t *testing.T, k *ecdsa.PrivateKey) ([]byte, []byte) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), der
}

// newPKI makes a CA and a leaf valid from an hour ago until leafNotAfter.
func newPKI(t *testing.T, leafNotAfter time.Time) pki {
	t.Helper()
	now := time.Now()
	caKey, leafKey := newECKey(t), newECKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Rotate Test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caPEM, caCert := certPEM(t, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "partner.example"},
		NotBefore: now.Add(-time.Hour), NotAfter: leafNotAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	leafPEM, leafCert := certPEM(t, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	kp, kd := keyPEM(t, leafKey)
	other, _ := keyPEM(t, newECKey(t))
	return pki{
		ca: writeFile(t, "ca.pem", string(caPEM)), leaf: writeFile(t, "leaf.pem", string(leafPEM)),
		chain: writeFile(t, "chain.pem", string(leafPEM)+string(caPEM)), key: writeFile(t, "key.pem", string(kp)),
		otherKey: writeFile(t, "other.pem", string(other)), keyPEM: kp, keyDER: kd, leafCert: leafCert,
	}
}

func TestRotateDryRun(t *testing.T) {
	e := newTestEnv(t)
	p := newPKI(t, time.Now().Add(365*24*time.Hour))
	pw := writeFile(t, "pw", storePassword+"\n")
	var out output
	code := Rotate(testContext(t), []string{"--dry-run", "--project", "MyProject", "--keystore", "client-2027", "--cert", p.chain, "--key", p.key,
		"--env", "production", "--env", "staging", "--password-file", pw, "--keystore-for", "partner-a", "--keystore-for", "partner-b",
		"--mtls-proxy", "PaymentsAPI", "--delete-old", "client-2025", "--id", "rot-dry"}, e.io("", &out))
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	text := out.stdout.String()
	for _, secret := range []string{storePassword, "PRIVATE KEY", "CERTIFICATE", base64.StdEncoding.EncodeToString(p.keyDER)[:40], base64.StdEncoding.EncodeToString(p.leafCert.Raw)[:40]} {
		if strings.Contains(text+out.stderr.String(), secret) {
			t.Errorf("the dry run shows %q:\n%s", secret, text)
		}
	}
	var plan struct {
		ID    string `json:"id"`
		Steps []struct {
			Type   string         `json:"type"`
			Params map[string]any `json:"params"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(text), &plan); err != nil {
		t.Fatalf("%v:\n%s", err, text)
	}
	var types []string
	for _, s := range plan.Steps {
		types = append(types, s.Type)
	}
	want := "keystore.create credential.keystore.set credential.keystore.set proxy.mtls.update keystore.delete"
	if plan.ID != "rot-dry" || strings.Join(types, " ") != want {
		t.Fatalf("plan %s: steps %v, want %s", plan.ID, types, want)
	}
	envs := plan.Steps[0].Params["keyStoreEnvironmentList"].([]any)
	if len(envs) != 2 {
		t.Fatalf("environments %v", envs)
	}
	for _, env := range envs {
		m := env.(map[string]any)
		if m["password"] != "[REDACTED]" || m["file"] != "[REDACTED]" || m["keyStoreType"] != "PKCS12" {
			t.Errorf("environment %v", m)
		}
	}
	if name := plan.Steps[3].Params["keyStoreName"]; name != "client-2027" {
		t.Errorf("proxy step %v", plan.Steps[3].Params)
	}
	if bytes.Contains(out.stderr.Bytes(), []byte("generated")) {
		t.Errorf("stderr speaks of a generated password: %s", out.stderr.String())
	}

	// A truststore's password cannot be derived from its public certificates: it must
	// be given.
	out = output{}
	code = Rotate(testContext(t), []string{"--dry-run", "--project", "MyProject", "--keystore", "trust-2027", "--ca", p.ca, "--env", "production",
		"--truststore-for", "partner-a", "--mtls-proxy", "PaymentsAPI"}, e.io("", &out))
	if code != 1 || !strings.Contains(out.stderr.String(), "--password-file is required with --ca") {
		t.Fatalf("truststore without --password-file: exit %d; stderr:\n%s", code, out.stderr.String())
	}
	out = output{}
	code = Rotate(testContext(t), []string{"--dry-run", "--project", "MyProject", "--keystore", "trust-2027", "--ca", p.ca, "--env", "production",
		"--password-file", pw, "--truststore-for", "partner-a", "--mtls-proxy", "PaymentsAPI"}, e.io("", &out))
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	if !strings.Contains(out.stdout.String(), `"trustStoreName": "trust-2027"`) || !strings.Contains(out.stdout.String(), `"credential.truststore.set"`) {
		t.Errorf("truststore plan:\n%s", out.stdout.String())
	}
}

func TestRotateChecksFail(t *testing.T) {
	e := newTestEnv(t)
	good := newPKI(t, time.Now().Add(365*24*time.Hour))
	expired := newPKI(t, time.Now().Add(-time.Minute))
	base := []string{"--dry-run", "--project", "MyProject", "--keystore", "k", "--env", "production"}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"mismatched key", []string{"--cert", good.chain, "--key", good.otherKey}, "private key does not match the leaf certificate"},
		{"expired leaf", []string{"--cert", expired.chain, "--key", expired.key}, "certificate has expired"},
	} {
		var out output
		code := Rotate(testContext(t), append(append([]string(nil), base...), c.args...), e.io("", &out))
		if code != 2 || !strings.Contains(out.stderr.String(), c.want) || !strings.Contains(out.stderr.String(), "nothing was published") || out.stdout.Len() != 0 {
			t.Errorf("%s: exit %d, stdout %q, stderr:\n%s", c.name, code, out.stdout.String(), out.stderr.String())
		}
		if strings.Contains(out.stderr.String(), "BEGIN") {
			t.Errorf("%s: stderr shows PEM", c.name)
		}
	}
	soon := newPKI(t, time.Now().Add(5*24*time.Hour))
	var out output
	if code := Rotate(testContext(t), append(base, "--cert", soon.chain, "--key", soon.key), e.io("", &out)); code != 0 || !strings.Contains(out.stderr.String(), "warning:") {
		t.Errorf("expiring soon: exit %d, stderr:\n%s", code, out.stderr.String())
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--keystore", "k", "--env", "e", "--ca", good.ca}, "--project is required"},
		{[]string{"--project", "P", "--env", "e", "--ca", good.ca}, "--keystore is required"},
		{[]string{"--project", "P", "--keystore", "k", "--ca", good.ca}, "--env is required"},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--cert", good.chain}, "--cert and --key go together"},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--cert", good.chain, "--key", good.key, "--ca", good.ca}, "not both"},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--ca", good.ca, "--keystore-for", "u"}, "use --truststore-for"},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--ca", good.ca, "--type", "PEM"}, `--type "PEM"`},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--ca", good.ca, "--password", "x"}, "flag provided but not defined: -password"},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--ca", good.ca, "--mtls-proxy", "A", "--stages", "e,f"}, `"f" is not one of --env`},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--ca", good.ca, "--mtls-proxy", "A", "--stages", "e,e"}, `names "e" twice`},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--ca", good.ca, "--stages", "e"}, "--stages needs --mtls-proxy"},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--ca", good.ca, "--mtls-proxy", "A", "--truststore-for", "u", "--stages", "e"}, "cannot stage --keystore-for or --truststore-for"},
		{[]string{"--project", "P", "--keystore", "k", "--env", "e", "--ca", good.ca, "--verify-timeout", "2h"}, "--verify-timeout 2h0m0s"},
	} {
		var out output
		if code := Rotate(testContext(t), append([]string{"--dry-run"}, c.args...), e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, out.stderr.String(), c.want)
		}
	}
}

func TestRotateRuns(t *testing.T) {
	e, sim := newWorkerEnv(t)
	p := newPKI(t, time.Now().Add(365*24*time.Hour))
	pw := writeFile(t, "pw", storePassword+"\n")

	// A PKCS12 keystore for partner-a and MyAPI, the old one deleted.
	var out output
	code := Rotate(testContext(t), []string{"--project", "MyProject", "--keystore", "client-2027", "--cert", p.chain, "--key", p.key,
		"--env", "production", "--env", "staging", "--password-file", pw, "--keystore-for", "partner-a", "--mtls-proxy", "MyAPI",
		"--delete-old", "legacy-2019", "--id", "rot-run-1", "--output", "json"}, e.io("", &out))
	if code != 0 {
		t.Fatalf("exit %d; stdout %s; stderr:\n%s", code, out.stdout.String(), out.stderr.String())
	}
	if r := onePlanResult(t, &out); len(r.Steps) != 4 || r.Status != "succeeded" {
		t.Errorf("result %+v", r)
	}
	if strings.Contains(out.stdout.String()+out.stderr.String(), storePassword) {
		t.Error("the output shows the password")
	}
	ks, ok := sim.Keystore("MyProject", "client-2027")
	if !ok || len(ks.Environments) != 2 || !bytes.Equal(ks.Environments[0].File, ks.Environments[1].File) {
		t.Fatalf("keystore %+v", ks)
	}
	key, leaf, cas, err := pkcs12.DecodeChain(ks.Environments[0].File, storePassword)
	if err != nil || !leaf.Equal(p.leafCert) || len(cas) != 1 {
		t.Fatalf("DecodeChain: %v", err)
	}
	if !key.(*ecdsa.PrivateKey).PublicKey.Equal(p.leafCert.PublicKey) {
		t.Error("the keystore's key is not the leaf's")
	}
	if cred, _ := sim.Credential("MyProject", "partner-a"); cred.Keystore != "client-2027" {
		t.Errorf("partner-a's keystore %q", cred.Keystore)
	}
	if proxy, _ := sim.Proxy("MyProject", "MyAPI"); proxy.KeyStoreName != "client-2027" {
		t.Errorf("MyAPI %+v", proxy)
	}
	if _, ok := sim.Keystore("MyProject", "legacy-2019"); ok {
		t.Error("legacy-2019 was not deleted")
	}

	// A JKS truststore for partner-b and PaymentsAPI.
	out = output{}
	code = Rotate(testContext(t), []string{"--project", "MyProject", "--keystore", "trust-2027", "--type", "jks", "--ca", p.ca,
		"--env", "production", "--password-file", pw, "--truststore-for", "partner-b", "--mtls-proxy", "PaymentsAPI", "--id", "rot-run-2"}, e.io("", &out))
	if code != 0 {
		t.Fatalf("truststore: exit %d; stdout %s; stderr:\n%s", code, out.stdout.String(), out.stderr.String())
	}
	ts, _ := sim.Keystore("MyProject", "trust-2027")
	if len(ts.Environments) != 1 {
		t.Fatalf("truststore %+v", ts)
	}
	store := keystore.New()
	if err := store.Load(bytes.NewReader(ts.Environments[0].File), []byte(storePassword)); err != nil {
		t.Fatalf("JKS Load: %v", err)
	}
	if entry, err := store.GetTrustedCertificateEntry("ca-1"); err != nil || len(entry.Certificate.Content) == 0 {
		t.Errorf("ca-1: %v (aliases %v)", err, store.Aliases())
	}
	if cred, _ := sim.Credential("MyProject", "partner-b"); cred.Truststore != "trust-2027" {
		t.Errorf("partner-b's truststore %q", cred.Truststore)
	}
	if !strings.Contains(out.stdout.String(), "plan rot-run-2 succeeded") {
		t.Errorf("table:\n%s", out.stdout.String())
	}
}

// TestRotateRunAgain: a rotation whose later step fails deletes the keystore it
// created, and the same rotate run again is the same plan: the worker answers with its
// stored result, replayed, and runs nothing. With another --id it runs again from the
// start. A create that fails (the name is taken) deletes nothing.
func TestRotateRunAgain(t *testing.T) {
	e, sim := newWorkerEnv(t)
	p := newPKI(t, time.Now().Add(365*24*time.Hour))
	rotate := func(extra ...string) (int, messages.Result, string) {
		t.Helper()
		var out output
		args := append([]string{"--project", "MyProject", "--keystore", "client-2028", "--cert", p.chain, "--key", p.key,
			"--env", "production", "--keystore-for", "nobody", "--output", "json"}, extra...)
		code := Rotate(testContext(t), args, e.io("", &out))
		return code, onePlanResult(t, &out), out.stdout.String() + out.stderr.String()
	}
	code, first, text := rotate()
	if code != 2 || first.Status != "failed" || len(first.OnFailure) != 1 || first.OnFailure[0].Status != "succeeded" {
		t.Fatalf("exit %d, %+v:\n%s", code, first, text)
	}
	if _, ok := sim.Keystore("MyProject", "client-2028"); ok {
		t.Error("the failed rotation left its keystore behind")
	}
	requests := len(sim.Requests())
	code, again, text := rotate()
	if code != 2 || again.ID != first.ID || !again.Replayed || again.Status != "failed" {
		t.Errorf("the same rotate again: exit %d, %+v, want the stored result, replayed:\n%s", code, again, text)
	}
	if n := len(sim.Requests()); n != requests {
		t.Errorf("the same rotate again sent %d requests", n-requests)
	}
	code, retried, text := rotate("--id", "rot-retry-1")
	if code != 2 || retried.Replayed || retried.FailedStep == nil || *retried.FailedStep != 1 {
		t.Errorf("with another id: exit %d, %+v, want it run again, failing at step 2:\n%s", code, retried, text)
	}

	var out output
	code = Rotate(testContext(t), []string{"--project", "MyProject", "--keystore", "legacy-2019", "--cert", p.chain, "--key", p.key,
		"--env", "production", "--keystore-for", "partner-a", "--output", "json"}, e.io("", &out))
	if r := onePlanResult(t, &out); code != 2 || r.FailedStep == nil || *r.FailedStep != 0 || len(r.OnFailure) != 0 {
		t.Errorf("a taken name: exit %d, %+v, want a failed create and no undo", code, r)
	}
	if _, ok := sim.Keystore("MyProject", "legacy-2019"); !ok {
		t.Error("a failed create deleted the keystore that had the name")
	}

	out = output{}
	code = Rotate(testContext(t), []string{"--dry-run", "--project", "MyProject", "--keystore", "client-2028", "--cert", p.chain, "--key", p.key,
		"--env", "production", "--alias", "gateway"}, e.io("", &out))
	if code != 1 || !strings.Contains(out.stderr.String(), "--alias") {
		t.Errorf("--alias with a PKCS12 keystore: exit %d:\n%s", code, out.stderr.String())
	}
}

// TestRotateStagedPlan: with two proxies and two stages, each stage verifies every
// proxy before and after, and a failure anywhere in a stage, once a proxy changed
// there, rolls back every proxy of that stage and no other; the keystore is deleted
// only when no proxy was pointed at it.
func TestRotateStagedPlan(t *testing.T) {
	e := newTestEnv(t)
	p := newPKI(t, time.Now().Add(365*24*time.Hour))
	var out output
	code := Rotate(testContext(t), []string{"--dry-run", "--project", "MyProject", "--keystore", "client-2027", "--cert", p.chain, "--key", p.key,
		"--env", "production", "--env", "staging", "--mtls-proxy", "A", "--mtls-proxy", "B", "--stages", "staging,production", "--id", "staged"}, e.io("", &out))
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	var plan struct {
		Steps     []struct{ Type string }
		OnFailure []struct {
			Type           string
			Params         map[string]any
			WhenStepFailed []int
		}
	}
	if err := json.Unmarshal(out.stdout.Bytes(), &plan); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, s := range plan.Steps {
		types = append(types, s.Type)
	}
	stage := "proxy.verify proxy.verify proxy.mtls.update proxy.mtls.update proxy.deploy proxy.deploy proxy.verify proxy.verify"
	if got, want := strings.Join(types, " "), "keystore.create "+stage+" "+stage; got != want {
		t.Fatalf("steps %s\nwant  %s", got, want)
	}
	var undo []string
	for _, u := range plan.OnFailure {
		undo = append(undo, fmt.Sprintf("%s %v %v %v", u.Type, u.Params["apiProxyName"], u.Params["environmentName"], u.WhenStepFailed))
	}
	want := []string{
		"proxy.rollback A staging [3 4 5 6 7 8]", "proxy.rollback B staging [3 4 5 6 7 8]",
		"proxy.rollback A production [11 12 13 14 15 16]", "proxy.rollback B production [11 12 13 14 15 16]",
		"keystore.delete <nil> <nil> [1 2 3]",
	}
	if strings.Join(undo, "\n") != strings.Join(want, "\n") {
		t.Errorf("onFailure:\n%s\nwant:\n%s", strings.Join(undo, "\n"), strings.Join(want, "\n"))
	}
}
