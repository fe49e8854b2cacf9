package deploy

// The Helm chart (helm/apiops-worker) must deploy what the kustomize base deploys: its
// defaults are rendered with the real helm and compared, object by object and field by
// field, with kustomize's rendering of base/, and its observability objects with
// observability/. make check-helm installs helm and runs these tests with HELM and
// KUSTOMIZE set.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const chartDir = "helm/apiops-worker"

// tool is the binary named by the environment variable envVar (make check-helm sets
// HELM and KUSTOMIZE), else bin/<name> where make installs it. Without either the test
// skips, saying how to get it; a variable that names no binary fails, so that CI cannot
// skip silently.
func tool(t *testing.T, envVar, name string) string {
	t.Helper()
	if path := os.Getenv(envVar); path != "" {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s=%s: %v (go test runs in deploy/: name it by an absolute path)", envVar, path, err)
		}
		return path
	}
	if path := filepath.Join("..", "bin", name); fileExists(path) {
		return path
	}
	t.Skipf("no %s: set %s, or run make check-helm, which installs it into bin/", name, envVar)
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// helmCommand is helm with its configuration, cache and data in a temporary directory,
// so that no repository or plugin of the machine's user changes what it renders.
func helmCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(tool(t, "HELM", "helm"), args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	return cmd
}

// helmTemplate renders the chart as release apiops-worker, the name that gives the
// objects deploy/base's names, with args added (--set, -f).
func helmTemplate(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	out, stderr, err := helmTemplateResult(t, args...)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return decodeDocs(t, out)
}

func helmTemplateResult(t *testing.T, args ...string) (stdout []byte, stderr string, err error) {
	t.Helper()
	cmd := helmCommand(t, append([]string{"template", "apiops-worker", chartDir}, args...)...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	stdout, err = cmd.Output()
	return stdout, errOut.String(), err
}

// kustomizeBuild renders a kustomization with $KUSTOMIZE, or as render does.
func kustomizeBuild(t *testing.T, dir string) []map[string]any {
	t.Helper()
	path := os.Getenv("KUSTOMIZE")
	if path == "" {
		return render(t, dir)
	}
	cmd := exec.Command(tool(t, "KUSTOMIZE", "kustomize"), "build", dir)
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("%s: %v\n%s", cmd, err, exit.Stderr)
		}
		t.Fatal(err)
	}
	return decodeDocs(t, out)
}

// decodeDocs reads a stream of YAML documents, leaving out empty ones (helm renders a
// template that is switched off as nothing).
func decodeDocs(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%v in:\n%s", err, out)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

func readDoc(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := decodeDocs(t, b)
	if len(docs) != 1 {
		t.Fatalf("%s holds %d objects, want 1", path, len(docs))
	}
	return docs[0]
}

// objectKey names an object as kubectl does: Kind/name.
func objectKey(doc map[string]any) string {
	return fmt.Sprintf("%v/%v", doc["kind"], get(doc, "metadata", "name"))
}

func byKey(docs []map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, d := range docs {
		out[objectKey(d)] = d
	}
	return out
}

// helmOnly are the labels and annotations the chart adds and the base has no use for:
// Helm's usual labels, the release in the selectors (two releases in one namespace
// must not select each other's pods), and the ConfigMap's checksum that rolls the pods
// when a setting changes (kustomize users get that from configMapGenerator).
var helmOnly = []string{
	"helm.sh/chart",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/instance",
	"app.kubernetes.io/version",
	"checksum/config",
}

// withoutHelmOnly is a copy of v without the helmOnly keys, at any depth: they are
// label and annotation keys, which no other field has.
func withoutHelmOnly(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			if !slices.Contains(helmOnly, k) {
				out[k] = withoutHelmOnly(x)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = withoutHelmOnly(x)
		}
		return out
	}
	return v
}

// absent stands for a key one side lacks, in diffs.
type absent struct{}

func (absent) String() string { return "(absent)" }

// diffValues lists, one line per path, where got differs from want.
func diffValues(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		keys := slices.Collect(maps.Keys(w))
		for k := range g {
			if _, both := w[k]; !both {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		var out []string
		for _, k := range keys {
			wv, ok := w[k]
			if !ok {
				wv = absent{}
			}
			gv, ok := g[k]
			if !ok {
				gv = absent{}
			}
			out = append(out, diffValues(path+"."+k, wv, gv)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		var out []string
		for i := range w {
			out = append(out, diffValues(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	}
	if reflect.DeepEqual(want, got) {
		return nil
	}
	return []string{fmt.Sprintf("%s: want %s, helm renders %s", path, show(want), show(got))}
}

func show(v any) string {
	if a, ok := v.(absent); ok {
		return a.String()
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := strings.TrimSpace(string(b))
	if strings.Contains(s, "\n") {
		return "\n\t\t" + strings.ReplaceAll(s, "\n", "\n\t\t")
	}
	return s
}

// compareObjects fails with every difference between the objects want (kustomize's, or
// the observability files) and Helm's rendering of them, once the helmOnly keys are
// removed.
func compareObjects(t *testing.T, wantFrom string, want, helm []map[string]any) {
	t.Helper()
	w, h := byKey(want), byKey(helm)
	for _, key := range slices.Sorted(maps.Keys(w)) {
		got, ok := h[key]
		if !ok {
			t.Errorf("helm renders no %s, which %s has", key, wantFrom)
			continue
		}
		if diffs := diffValues(key, withoutHelmOnly(w[key]), withoutHelmOnly(got)); len(diffs) > 0 {
			t.Errorf("%s differs between %s and the chart (want: %s):\n\t%s", key, wantFrom, wantFrom, strings.Join(diffs, "\n\t"))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(h)) {
		if _, ok := w[key]; !ok {
			t.Errorf("helm renders %s, which %s does not have", key, wantFrom)
		}
	}
}

// checkSelectors: once the release is in the selectors (a helmOnly label the
// comparison leaves out), every selector still selects the pods.
func checkSelectors(t *testing.T, docs []map[string]any) {
	t.Helper()
	k := byKind(docs)
	pod := get(k["Deployment"], "spec", "template", "metadata", "labels")
	selectors := map[string]any{
		"the Deployment's":          get(k["Deployment"], "spec", "selector", "matchLabels"),
		"the Service's":             get(k["Service"], "spec", "selector"),
		"the topology spread's":     get(k["Deployment"], "spec", "template", "spec", "topologySpreadConstraints", 0, "labelSelector", "matchLabels"),
		"the PodDisruptionBudget's": get(k["PodDisruptionBudget"], "spec", "selector", "matchLabels"),
	}
	if k["PodMonitor"] != nil {
		selectors["the PodMonitor's"] = get(k["PodMonitor"], "spec", "selector", "matchLabels")
	}
	for name, sel := range selectors {
		if !subset(sel, pod) {
			t.Errorf("%s selector %v does not select the pods, labelled %v", name, sel, pod)
		} else if get(sel, "app.kubernetes.io/instance") != "apiops-worker" {
			t.Errorf("%s selector %v does not name the release: another release's pods in the namespace would match", name, sel)
		}
	}
}

// TestHelmDefaultsRenderTheBase: the chart's defaults, as release apiops-worker, render
// the objects of deploy/base: the same Deployment (probes, security context, grace
// period, volumes...), Service, PodDisruptionBudget, ServiceAccount and ConfigMap,
// and nothing else.
func TestHelmDefaultsRenderTheBase(t *testing.T) {
	helm := helmTemplate(t)
	compareObjects(t, "kustomize build deploy/base", kustomizeBuild(t, "base"), helm)
	checkSelectors(t, helm)
}

// TestHelmObservabilityMatchesTheManifests: switched on, the PodMonitor and the
// PrometheusRule are those of deploy/observability, the rules included.
func TestHelmObservabilityMatchesTheManifests(t *testing.T) {
	helm := helmTemplate(t, "--set", "podMonitor.enabled=true", "--set", "prometheusRule.enabled=true")
	var want, got []map[string]any
	for _, file := range []string{"observability/podmonitor.yaml", "observability/prometheusrule.yaml"} {
		want = append(want, readDoc(t, file))
	}
	for _, d := range helm {
		if kind := d["kind"]; kind == "PodMonitor" || kind == "PrometheusRule" {
			got = append(got, d)
		}
	}
	compareObjects(t, "deploy/observability", want, got)
	checkSelectors(t, helm)
}

// TestHelmChartAlertsAreTheRulesFile: the chart cannot read a file outside its
// directory, so it holds a copy of the rules; the copy must not drift.
func TestHelmChartAlertsAreTheRulesFile(t *testing.T) {
	const rules, chartCopy = "observability/alerts.rules.yml", chartDir + "/files/alerts.rules.yml"
	want, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(chartCopy)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, got) {
		wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
		line := 0
		for line < len(wl) && line < len(gl) && wl[line] == gl[line] {
			line++
		}
		at := func(lines []string) string {
			if line < len(lines) {
				return strconv.Quote(lines[line])
			}
			return "(end of file)"
		}
		t.Errorf("deploy/%s differs from deploy/%s from line %d (%s, the chart has %s): run make helm-sync-alerts",
			chartCopy, rules, line+1, at(wl), at(gl))
	}
}

// TestHelmRendersTheExampleOverlay: the chart, given the example overlay's values
// (namespace, image, NATS_URL, APIOPS_URL), renders the overlay's objects but its
// NetworkPolicy, which the chart leaves to the cluster (docs/kubernetes.md). The
// values are read from kustomize's rendering, so that the overlay and this test cannot
// drift apart.
func TestHelmRendersTheExampleOverlay(t *testing.T) {
	overlay := kustomizeBuild(t, exampleOverlay)
	k := byKind(overlay)
	settings, _ := get(k["ConfigMap"], "data").(map[string]any)
	namespace, _ := get(k["Deployment"], "metadata", "namespace").(string)
	image, _ := get(k["Deployment"], "spec", "template", "spec", "containers", 0, "image").(string)
	colon := strings.LastIndex(image, ":")
	if namespace == "" || colon < 0 || strings.Contains(image[colon:], "/") || settings == nil {
		t.Fatalf("kustomize build deploy/%s: namespace %q, image %q, settings %v: want all three, the image with a tag", exampleOverlay, namespace, image, settings)
	}
	helm := helmTemplate(t, "--namespace", namespace,
		"--set", "image.repository="+image[:colon], "--set", "image.tag="+image[colon+1:],
		"--set", "nats.url="+toString(settings["NATS_URL"]), "--set", "apiops.url="+toString(settings["APIOPS_URL"]))
	var want []map[string]any
	for _, d := range overlay {
		if d["kind"] == "NetworkPolicy" {
			continue
		}
		// helm template leaves metadata.namespace to helm install (-n), which puts
		// every object in the release's namespace; kustomize writes it out.
		if ns := get(d, "metadata", "namespace"); ns != namespace {
			t.Errorf("%s: namespace %v, want %s", objectKey(d), ns, namespace)
		}
		d = withoutHelmOnly(d).(map[string]any)
		delete(d["metadata"].(map[string]any), "namespace")
		want = append(want, d)
	}
	compareObjects(t, "kustomize build deploy/"+exampleOverlay, want, helm)
}

// settingsAndMounts checks what every rendering must hold: each file the ConfigMap
// names lies in a volume mounted without subPath (never updated), from a Secret; and
// returns the settings.
func settingsAndMounts(t *testing.T, docs []map[string]any) (settings map[string]any, container any, volumes map[string]any) {
	t.Helper()
	k := byKind(docs)
	settings, _ = get(k["ConfigMap"], "data").(map[string]any)
	container = get(k["Deployment"], "spec", "template", "spec", "containers", 0)
	volumes = map[string]any{}
	for _, v := range get(k["Deployment"], "spec", "template", "spec", "volumes").([]any) {
		volumes[get(v, "name").(string)] = v
	}
	for _, name := range []string{"NATS_CREDS", "APIOPS_TOKEN_FILE", "APIOPS_CLIENT_SECRET_FILE", "APIOPS_WORKER_SEAL_KEYS"} {
		file, ok := settings[name].(string)
		if !ok {
			continue
		}
		mounted := false
		for _, m := range get(container, "volumeMounts").([]any) {
			dir, _ := get(m, "mountPath").(string)
			if (file == dir || strings.HasPrefix(file, dir+"/")) && get(m, "subPath") == nil &&
				get(volumes[get(m, "name").(string)], "secret", "secretName") != nil {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("%s %s is not in a Secret volume mounted without subPath", name, file)
		}
	}
	for _, v := range settings {
		if _, ok := v.(string); !ok {
			t.Errorf("ConfigMap value %v (%T) is not a string", v, v)
		}
	}
	return settings, container, volumes
}

// TestHelmValues: each value reaches the objects, and the worker's settings stay
// consistent with the mounts.
func TestHelmValues(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	// YAML as a user writes it: numbers unquoted where the chart takes numbers.
	if err := os.WriteFile(values, []byte(`
replicaCount: 3
image: {repository: registry.example.com/apiops-worker, tag: v1.2.3, pullPolicy: IfNotPresent}
nats:
  url: nats://nats.messaging.svc:4222
  credentials: {secretName: worker-nats, key: apiops.creds}
apiops:
  url: https://apiops.example.com
  token: {secretName: worker-token, key: apiops-token}
sealKeys: {secretName: worker-seal-keys, enabled: true, requireSealed: true}
config:
  APIOPS_WORKER_CONCURRENCY: "64"
  APIOPS_WORKER_STREAM_MAX_BYTES: "4294967296"
extraArgs: ["--log-level", "debug"]
extraEnv:
  - name: OTEL_EXPORTER_OTLP_HEADERS
    valueFrom: {secretKeyRef: {name: otlp, key: headers}}
resources: {limits: {memory: 512Mi}}
terminationGracePeriodSeconds: 60
podDisruptionBudget: {minAvailable: 2}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	docs := helmTemplate(t, "-f", values)
	k := byKind(docs)
	settings, c, volumes := settingsAndMounts(t, docs)
	for name, want := range map[string]string{
		"NATS_URL":                       "nats://nats.messaging.svc:4222",
		"NATS_CREDS":                     "/var/run/secrets/nats/apiops.creds",
		"APIOPS_URL":                     "https://apiops.example.com",
		"APIOPS_TOKEN_FILE":              "/var/run/secrets/apiops/apiops-token",
		"APIOPS_WORKER_SEAL_KEYS":        "/var/run/secrets/seal-keys",
		"APIOPS_WORKER_REQUIRE_SEALED":   "true",
		"APIOPS_WORKER_CONCURRENCY":      "64",
		"APIOPS_WORKER_STREAM_MAX_BYTES": "4294967296",
		"APIOPS_WORKER_SHUTDOWN_TIMEOUT": "25s", // a default kept beside the values set
	} {
		if settings[name] != want {
			t.Errorf("ConfigMap %s = %v, want %q", name, settings[name], want)
		}
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"replicas", get(k["Deployment"], "spec", "replicas"), 3},
		{"image", get(c, "image"), "registry.example.com/apiops-worker:v1.2.3"},
		{"pull policy", get(c, "imagePullPolicy"), "IfNotPresent"},
		{"args", get(c, "args"), []any{"--log-level", "debug"}},
		{"env", get(c, "env", 0, "valueFrom", "secretKeyRef", "name"), "otlp"},
		{"memory limit", get(c, "resources", "limits", "memory"), "512Mi"},
		{"grace period", get(k["Deployment"], "spec", "template", "spec", "terminationGracePeriodSeconds"), 60},
		{"PDB", get(k["PodDisruptionBudget"], "spec", "minAvailable"), 2},
		{"token Secret", get(volumes["apiops-token"], "secret", "secretName"), "worker-token"},
		{"NATS Secret", get(volumes["nats-creds"], "secret", "secretName"), "worker-nats"},
		{"seal keys Secret", get(volumes["seal-keys"], "secret", "secretName"), "worker-seal-keys"},
		{"version label", get(k["Deployment"], "metadata", "labels", "app.kubernetes.io/version"), "v1.2.3"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if get(k["Deployment"], "spec", "template", "metadata", "annotations", "checksum/config") == nil {
		t.Error("no checksum/config annotation: a changed setting would not roll the pods")
	}
}

// TestHelmClientCredentials: with client credentials the chart sets the client id and
// the secret's file, and no token, which the worker would refuse alongside them.
func TestHelmClientCredentials(t *testing.T) {
	docs := helmTemplate(t, "--set", "apiops.token.secretName=",
		"--set", "apiops.clientCredentials.clientId=apiops-worker",
		"--set", "apiops.clientCredentials.secretName=apiops-client",
		"--set", "apiops.clientCredentials.tokenURL=https://sso.example.com/token",
		"--set", "nats.credentials.secretName=")
	settings, _, volumes := settingsAndMounts(t, docs)
	for name, want := range map[string]any{
		"APIOPS_CLIENT_ID":          "apiops-worker",
		"APIOPS_CLIENT_SECRET_FILE": "/var/run/secrets/apiops/client-secret",
		"APIOPS_TOKEN_URL":          "https://sso.example.com/token",
		"APIOPS_TOKEN_FILE":         nil,
		"NATS_CREDS":                nil,
	} {
		if settings[name] != want {
			t.Errorf("ConfigMap %s = %v, want %v", name, settings[name], want)
		}
	}
	if got := get(volumes["apiops-client-secret"], "secret", "secretName"); got != "apiops-client" {
		t.Errorf("client secret volume's Secret %v, want apiops-client", got)
	}
	for _, gone := range []string{"apiops-token", "nats-creds"} {
		if volumes[gone] != nil {
			t.Errorf("volume %s is still there", gone)
		}
	}
}

// TestHelmRefusesBadValues: what the worker would refuse at start, in a crash loop, or
// what would leak or block, helm refuses at once with a message that says what to do.
func TestHelmRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string // in helm's error
	}{
		{"token and client credentials", []string{"--set", "apiops.clientCredentials.clientId=w", "--set", "apiops.clientCredentials.secretName=s"},
			"the worker takes one or the other"},
		{"no credentials", []string{"--set", "apiops.token.secretName="}, "no APIOps credentials"},
		{"client id without its secret", []string{"--set", "apiops.token.secretName=", "--set", "apiops.clientCredentials.clientId=w"},
			"apiops.clientCredentials.clientId needs apiops.clientCredentials.secretName"},
		{"chart-managed setting", []string{"--set", "config.NATS_URL=nats://elsewhere:4222"}, "config.NATS_URL is set by the chart"},
		{"secret in the ConfigMap", []string{"--set", "config.NATS_PASSWORD=hunter2"}, "would put a secret in a ConfigMap"},
		{"required sealing without keys", []string{"--set", "sealKeys.requireSealed=true"}, "sealKeys.requireSealed needs sealKeys.enabled"},
		{"a number in config", []string{"--set", "config.APIOPS_WORKER_CONCURRENCY=64"}, "APIOPS_WORKER_CONCURRENCY"},
		{"a PDB that blocks drains", []string{"--set", "replicaCount=1"}, "blocks every node drain"},
		{"a misspelt value", []string{"--set", "replicas=3"}, "replicas"},
		// Refused by values.schema.json, whose errors name the value by its JSON pointer.
		{"no APIOps URL", []string{"--set", "apiops.url="}, "/apiops/url"},
		{"an APIOps URL without a host", []string{"--set", "apiops.url=https://"}, "/apiops/url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := helmTemplateResult(t, c.args...)
			if err == nil {
				t.Fatalf("helm template %s succeeded, want an error saying %q", strings.Join(c.args, " "), c.want)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("helm template %s: %s\nwant an error saying %q", strings.Join(c.args, " "), stderr, c.want)
			}
		})
	}
}
