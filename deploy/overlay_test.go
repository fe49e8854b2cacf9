package deploy

import (
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const exampleOverlay = "overlays/example"

// TestExampleOverlay: the example overlay puts every object of the base in its
// namespace with its image, and its NetworkPolicy lets the worker reach what its
// settings name (DNS, NATS_URL, APIOPS_URL) and lets Prometheus scrape it: a policy
// that drifts from the settings cuts the worker off without any error in the manifests.
func TestExampleOverlay(t *testing.T) {
	docs := kustomizeBuild(t, exampleOverlay)
	var kustomization struct {
		Namespace string `yaml:"namespace"`
		Images    []struct {
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
	b, err := os.ReadFile(exampleOverlay + "/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &kustomization); err != nil {
		t.Fatal(err)
	}
	if kustomization.Namespace == "" || len(kustomization.Images) != 1 {
		t.Fatalf("%s/kustomization.yaml: namespace %q, %d images; want a namespace and the worker's image", exampleOverlay, kustomization.Namespace, len(kustomization.Images))
	}

	base := byKey(kustomizeBuild(t, "base"))
	k := byKind(docs)
	for key := range base {
		if byKey(docs)[key] == nil {
			t.Errorf("the overlay lost %s", key)
		}
	}
	for _, d := range docs {
		if ns := get(d, "metadata", "namespace"); ns != kustomization.Namespace {
			t.Errorf("%s in namespace %v, want %s", objectKey(d), ns, kustomization.Namespace)
		}
	}
	pod := get(k["Deployment"], "spec", "template")
	c := get(pod, "spec", "containers", 0)
	if img, want := get(c, "image"), kustomization.Images[0].NewName+":"+kustomization.Images[0].NewTag; img != want {
		t.Errorf("image %v, want %s", img, want)
	}

	np := k["NetworkPolicy"]
	if np == nil {
		t.Fatal("no NetworkPolicy")
	}
	if !subset(get(np, "spec", "podSelector", "matchLabels"), get(pod, "metadata", "labels")) {
		t.Errorf("the NetworkPolicy's podSelector %v does not select the worker's pods", get(np, "spec", "podSelector"))
	}
	if types, _ := get(np, "spec", "policyTypes").([]any); !slices.Contains(types, any("Ingress")) || !slices.Contains(types, any("Egress")) {
		t.Errorf("policyTypes %v, want Ingress and Egress", types)
	}
	settings := get(k["ConfigMap"], "data").(map[string]any)

	// DNS, both protocols: answers too big for UDP come over TCP.
	for _, proto := range []string{"UDP", "TCP"} {
		if !allows(get(np, "spec", "egress"), proto, 53, nil) {
			t.Errorf("no egress to DNS over %s port 53", proto)
		}
	}
	// NATS: a Service name <service>.<namespace>.svc, so the rule names that namespace.
	natsHost, natsPort := hostPort(t, settings["NATS_URL"])
	natsNamespace := ""
	if parts := strings.Split(natsHost, "."); len(parts) >= 3 && parts[2] == "svc" {
		natsNamespace = parts[1]
	}
	if natsNamespace == "" {
		t.Errorf("NATS_URL %v is not a Service of the cluster (<name>.<namespace>.svc): the test cannot tell which rule should allow it", settings["NATS_URL"])
	} else if !allows(get(np, "spec", "egress"), "TCP", natsPort, func(peer any) bool {
		return get(peer, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") == natsNamespace
	}) {
		t.Errorf("no egress to namespace %s on port %d for NATS_URL %v", natsNamespace, natsPort, settings["NATS_URL"])
	}
	// APIOps: outside the cluster, by address.
	_, apiopsPort := hostPort(t, settings["APIOPS_URL"])
	if !allows(get(np, "spec", "egress"), "TCP", apiopsPort, func(peer any) bool {
		_, _, err := net.ParseCIDR(toString(get(peer, "ipBlock", "cidr")))
		return err == nil
	}) {
		t.Errorf("no egress to an ipBlock on port %d for APIOPS_URL %v", apiopsPort, settings["APIOPS_URL"])
	}
	// Scraping: the container's http port, by number or name.
	scraped := false
	for _, rule := range get(np, "spec", "ingress").([]any) {
		for _, p := range get(rule, "ports").([]any) {
			if n := get(p, "port"); n == get(c, "ports", 0, "containerPort") || n == get(c, "ports", 0, "name") {
				scraped = get(rule, "from") != nil // from nowhere in particular is from anywhere
			}
		}
	}
	if !scraped {
		t.Errorf("no ingress from a named source to the metrics port %v", get(c, "ports", 0, "containerPort"))
	}
}

// allows: some rule lets through protocol to port, toward a peer that matches (any
// peer when match is nil).
func allows(rules any, protocol string, port int, match func(peer any) bool) bool {
	for _, rule := range rules.([]any) {
		portOK := false
		for _, p := range get(rule, "ports").([]any) {
			proto, _ := get(p, "protocol").(string)
			if (proto == protocol || proto == "" && protocol == "TCP") && get(p, "port") == port {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		if match == nil {
			return true
		}
		for _, peer := range get(rule, "to").([]any) {
			if match(peer) {
				return true
			}
		}
	}
	return false
}

// hostPort is the host and port of a URL setting, the port defaulting to its scheme's.
func hostPort(t *testing.T, setting any) (string, int) {
	t.Helper()
	u, err := url.Parse(toString(setting))
	if err != nil || u.Hostname() == "" {
		t.Fatalf("%v is not a URL with a host", setting)
	}
	if u.Port() == "" {
		port, ok := map[string]int{"nats": 4222, "tls": 4222, "http": 80, "https": 443}[u.Scheme]
		if !ok {
			t.Fatalf("%v: no port, and no default for scheme %q", setting, u.Scheme)
		}
		return u.Hostname(), port
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("%v: port: %v", setting, err)
	}
	return u.Hostname(), port
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}
