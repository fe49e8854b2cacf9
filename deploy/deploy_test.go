// Package deploy holds the Kubernetes manifests and NATS configuration; its test
// renders the kustomize base and checks what an operator relies on.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/apiops-worker/apiops-worker/messages"
)

// render runs kustomize (bin/kustomize, which make test installs, or kubectl's).
func render(t *testing.T, dir string) []map[string]any {
	t.Helper()
	var cmd *exec.Cmd
	if _, err := os.Stat("../bin/kustomize"); err == nil {
		cmd = exec.Command("../bin/kustomize", "build", dir)
	} else if kubectl, err := exec.LookPath("kubectl"); err == nil {
		cmd = exec.Command(kubectl, "kustomize", dir)
	} else {
		t.Skip("no kustomize: make test installs it into bin/")
	}
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("%s: %v\n%s", cmd, err, exit.Stderr)
		}
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, doc)
	}
}

// get walks a decoded document: get(doc, "spec", "template", "spec").
func get(v any, path ...any) any {
	for _, p := range path {
		switch key := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[key]
		case int:
			l, _ := v.([]any)
			if key >= len(l) {
				return nil
			}
			v = l[key]
		}
	}
	return v
}

func byKind(docs []map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, d := range docs {
		out[d["kind"].(string)] = d
	}
	return out
}

func subset(small, big any) bool {
	s, _ := small.(map[string]any)
	b, _ := big.(map[string]any)
	for k, v := range s {
		if b[k] != v {
			return false
		}
	}
	return len(s) > 0
}

func TestKustomizeBase(t *testing.T) {
	k := byKind(render(t, "base"))
	for _, kind := range []string{"Deployment", "Service", "PodDisruptionBudget", "ServiceAccount", "ConfigMap"} {
		if k[kind] == nil {
			t.Fatalf("no %s rendered", kind)
		}
	}
	dep, settings := k["Deployment"], get(k["ConfigMap"], "data").(map[string]any)
	if r, _ := get(dep, "spec", "replicas").(int); r < 2 {
		t.Errorf("replicas %v, want 2 or more", get(dep, "spec", "replicas"))
	}
	pod := get(dep, "spec", "template")
	podLabels := get(pod, "metadata", "labels")
	if !subset(get(dep, "spec", "selector", "matchLabels"), podLabels) ||
		!subset(get(k["PodDisruptionBudget"], "spec", "selector", "matchLabels"), podLabels) ||
		!subset(get(k["Service"], "spec", "selector"), podLabels) {
		t.Error("a selector does not match the pod's labels")
	}
	grace, _ := get(pod, "spec", "terminationGracePeriodSeconds").(int)
	shutdown, err := time.ParseDuration(settings["APIOPS_WORKER_SHUTDOWN_TIMEOUT"].(string))
	if err != nil || time.Duration(grace)*time.Second <= shutdown+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d is not well above the shutdown timeout %v", grace, shutdown)
	}
	c := get(pod, "spec", "containers", 0)
	if get(c, "readinessProbe", "httpGet", "path") != "/readyz" || get(c, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Error("probes are not on /readyz and /healthz")
	}
	if get(c, "resources", "requests", "memory") == nil || get(c, "resources", "limits", "memory") == nil {
		t.Error("no memory request and limit")
	}
	if get(pod, "spec", "securityContext", "runAsNonRoot") != true || get(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("the pod may run as root or write its root filesystem")
	}
	tokenFile := settings["APIOPS_TOKEN_FILE"].(string)
	mounted := false
	for _, m := range get(c, "volumeMounts").([]any) {
		if path, _ := get(m, "mountPath").(string); strings.HasPrefix(tokenFile, path+"/") {
			mounted = get(m, "subPath") == nil // a subPath mount is never updated
		}
	}
	if !mounted {
		t.Errorf("APIOPS_TOKEN_FILE %s is not in a Secret volume mounted without subPath", tokenFile)
	}
	if get(pod, "metadata", "annotations", "prometheus.io/scrape") != "true" || get(k["Service"], "metadata", "annotations", "prometheus.io/port") != "9090" {
		t.Error("no scrape annotations")
	}
	if get(k["ServiceAccount"], "automountServiceAccountToken") != false {
		t.Error("the service account token is mounted")
	}
}

// TestNATSClusterConfig checks what the 3-node example promises: JetStream with every
// write synced, three routes, one cluster name.
func TestNATSClusterConfig(t *testing.T) {
	for k, v := range map[string]string{
		"SERVER_NAME": "nats-0", "APIOPS_WORKER_NATS_PASSWORD": "w", "TEAM_A_NATS_PASSWORD": "a",
		"APIOPS_ADMIN_NATS_PASSWORD": "adm", "SYS_NATS_PASSWORD": "s",
	} {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile("nats/nats-cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !opts.JetStream || !opts.SyncAlways || len(opts.Routes) != 3 || opts.Cluster.Name != "apiops" || opts.ServerName != "nats-0" {
		t.Errorf("cluster options: jetstream %v sync %v routes %d cluster %q name %q",
			opts.JetStream, opts.SyncAlways, len(opts.Routes), opts.Cluster.Name, opts.ServerName)
	}
}

// shippedServer starts nats-server from the shipped nats-single.conf, which includes
// accounts.conf, with the passwords it reads from the environment.
func shippedServer(t *testing.T) *server.Server {
	t.Helper()
	for k, v := range map[string]string{
		"APIOPS_WORKER_NATS_PASSWORD": "w", "TEAM_A_NATS_PASSWORD": "a", "APIOPS_ADMIN_NATS_PASSWORD": "adm",
		"SYS_NATS_PASSWORD": "s", "NATS_STORE_DIR": t.TempDir(),
	} {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile("nats/nats-single.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return srv
}

// workerAccount is the account of the worker, its streams and its operators.
const workerAccount = "APIOPS"

// TestTeamAccounts checks the one account per team of accounts.conf: a team account
// imports from the worker's account exactly the command subjects of its projects, one
// per type the worker knows (plan included), so that adding a command type cannot
// leave teams unable to send it; its projects' results and replies; and the workers'
// service INFO. The worker's account exports each of these to that team alone. Teams
// have no JetStream; the worker's account has limits.
func TestTeamAccounts(t *testing.T) {
	srv := shippedServer(t)
	wantTypes := []string{messages.PlanType}
	for _, ct := range messages.Types() {
		wantTypes = append(wantTypes, ct.Name)
	}
	slices.Sort(wantTypes)
	info := func(name string) *server.AccountInfo {
		t.Helper()
		z, err := srv.Accountz(&server.AccountzOptions{Account: name})
		if err != nil {
			t.Fatalf("account %s: %v", name, err)
		}
		return z.Account
	}

	apiops := info(workerAccount)
	if !apiops.JetStream {
		t.Fatalf("account %s has no JetStream", workerAccount)
	}
	acc, err := srv.LookupAccount(workerAccount)
	if err != nil {
		t.Fatal(err)
	}
	if limits := acc.JetStreamUsage().Limits; limits.MaxStore <= 0 || limits.MaxMemory <= 0 {
		t.Errorf("account %s has no JetStream limits: %+v", workerAccount, limits)
	}
	exports := map[string]server.ExtExport{}
	for _, e := range apiops.Exports {
		exports[string(e.Subject)] = e
		if len(e.ApprovedAccounts) == 0 {
			t.Errorf("%s exports %s to every account", workerAccount, e.Subject)
		}
	}

	all, err := srv.Accountz(nil)
	if err != nil {
		t.Fatal(err)
	}
	var teams []string
	for _, name := range all.Accounts {
		if name != workerAccount && slices.ContainsFunc(info(name).Imports, func(i server.ExtImport) bool { return i.Account == workerAccount }) {
			teams = append(teams, name)
		}
	}
	slices.Sort(teams)
	if !slices.Contains(teams, "TEAM_A") {
		t.Fatalf("no account imports from %s but %v; want TEAM_A among them", workerAccount, teams)
	}
	exported := map[string]bool{} // the exports some team imports
	for _, team := range teams {
		ti := info(team)
		if ti.JetStream {
			t.Errorf("team account %s has JetStream: a team's commands are stored in %s", team, workerAccount)
		}
		types := map[string][]string{} // by project: the command types imported
		var streams, services []string
		for _, imp := range ti.Imports {
			if imp.Account != workerAccount {
				continue
			}
			subject := string(imp.Subject)
			if imp.LocalSubject != "" && string(imp.LocalSubject) != subject {
				t.Errorf("%s imports %s as %s: a team sees the subjects the worker uses", team, subject, imp.LocalSubject)
			}
			switch e, ok := exports[subject]; {
			case !ok:
				t.Errorf("%s imports %s, which %s does not export", team, subject, workerAccount)
			case subject != "$SRV.INFO.apiops-worker" && !slices.Equal(e.ApprovedAccounts, []string{team}):
				t.Errorf("%s exports %s to %v, not to %s alone", workerAccount, subject, e.ApprovedAccounts, team)
			case e.Type != imp.Type:
				t.Errorf("%s exports %s as a %s, %s imports it as a %s", workerAccount, subject, e.Type, team, imp.Type)
			}
			exported[subject] = true
			rest, isCommand := strings.CutPrefix(subject, messages.DefaultPrefix+".cmd.")
			project, typ, _ := strings.Cut(rest, ".")
			switch {
			case imp.Type.String() == "service" && isCommand:
				types[project] = append(types[project], typ)
			case imp.Type.String() == "service":
				services = append(services, subject)
			default:
				streams = append(streams, subject)
			}
		}
		if !slices.Equal(services, []string{"$SRV.INFO.apiops-worker"}) {
			t.Errorf("%s imports the services %v besides its commands; want $SRV.INFO.apiops-worker alone", team, services)
		}
		var wantStreams []string
		for project, got := range types {
			slices.Sort(got)
			if missing, extra := diff(wantTypes, got), diff(got, wantTypes); len(missing)+len(extra) > 0 {
				t.Errorf("%s's imports of project %s's commands: missing %q, not command types %q; import apiops.cmd.%s.<type> for every type the worker knows (messages.Types() and plan), each exported to %s alone, and nothing else",
					team, project, missing, extra, project, team)
			}
			wantStreams = append(wantStreams, messages.DefaultPrefix+".result."+project+".>", messages.ReplyInbox(project)+">")
		}
		slices.Sort(streams)
		slices.Sort(wantStreams)
		if len(types) == 0 || !slices.Equal(streams, wantStreams) {
			t.Errorf("%s imports the streams %v for the projects %v; want its projects' results and reply inboxes, %v", team, streams, slices.Collect(maps.Keys(types)), wantStreams)
		}
	}
	if info := exports["$SRV.INFO.apiops-worker"]; !slices.Equal(sorted(info.ApprovedAccounts), teams) || string(info.ResponseType) != server.Streamed.String() {
		t.Errorf("%s exports $SRV.INFO.apiops-worker to %v as a %q response; want every team %v, and a stream of answers (one per worker instance)",
			workerAccount, info.ApprovedAccounts, info.ResponseType, teams)
	}
	for subject := range exports {
		if !exported[subject] {
			t.Errorf("%s exports %s, which no team imports", workerAccount, subject)
		}
	}
}

// diff is what a holds that b does not.
func diff(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
