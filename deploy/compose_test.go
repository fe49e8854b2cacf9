package deploy_test

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The Compose file's NATS has no users and its metrics no login: it publishes every
// port on the loopback interface unless told otherwise.
func TestComposePublishesOnLoopback(t *testing.T) {
	data, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Ports []string `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatal(err)
	}
	published := 0
	for name, svc := range compose.Services {
		for _, port := range svc.Ports {
			published++
			if !strings.HasPrefix(port, "${BIND_ADDR:-127.0.0.1}:") {
				t.Errorf("%s publishes %q: want ${BIND_ADDR:-127.0.0.1}:<host port>:<port>", name, port)
			}
		}
	}
	if published == 0 {
		t.Error("no published port found")
	}
}
