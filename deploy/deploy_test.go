// Package deploy holds the Kubernetes manifests and NATS configuration; its test
// renders the kustomize base and checks what an operator relies on.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
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
