# The Helm chart (deploy/helm/apiops-worker) and the example overlay
# (deploy/overlays/example): make test runs check-helm.

# Helm 4, the current major; the chart is apiVersion v2, which Helm 3 reads too.
HELM_MODULE  := helm.sh/helm/v4
HELM_VERSION := v4.3.2
HELM         := $(BIN)/helm

.PHONY: helm-tool check-helm helm-sync-alerts

# bin/helm, built unless it already is HELM_VERSION: go install records the module's
# version in the binary, which `go version -m` reads back. So a clean clone builds it
# once (a few minutes: docs/kubernetes.md), later runs reuse it, and a changed
# HELM_VERSION, or another helm left in bin/, is built again; a plain file target
# would keep whatever bin/helm holds.
helm-tool:
	@have=$$($(GO) version -m $(HELM) 2>/dev/null | awk '$$1 == "mod" && $$2 == "$(HELM_MODULE)" { print $$3 }'); \
	if [ "$$have" = "$(HELM_VERSION)" ]; then exit 0; fi; \
	echo "building $(HELM) $(HELM_VERSION) (was: $${have:-none}); this takes a few minutes, once"; \
	GOBIN=$(BIN) $(GO) install $(HELM_MODULE)/cmd/helm@$(HELM_VERSION)

## check-helm: lint the chart (its defaults, and the PodMonitor and PrometheusRule
## switched on), build the example overlay, and run deploy/'s Helm and overlay tests:
## the chart's defaults render the objects of `kustomize build deploy/base` field by
## field, and given the example overlay's values those of the overlay; its PodMonitor
## and PrometheusRule are those of deploy/observability, its values reach the objects
## and bad ones are refused; the overlay's NetworkPolicy lets through what its settings
## name. Building bin/helm takes about 5 minutes with empty Go caches, once.
check-helm: helm-tool $(KUSTOMIZE)
	$(HELM) lint --strict deploy/helm/apiops-worker
	$(HELM) lint --strict deploy/helm/apiops-worker --set podMonitor.enabled=true --set prometheusRule.enabled=true
	$(KUSTOMIZE) build deploy/overlays/example > /dev/null
	HELM=$(HELM) KUSTOMIZE=$(KUSTOMIZE) $(GO) test -count=1 -run 'Helm|Overlay' ./deploy

## helm-sync-alerts: copy the alerts into the chart after changing
## deploy/observability/alerts.rules.yml (a test fails until they are equal).
helm-sync-alerts:
	cp deploy/observability/alerts.rules.yml deploy/helm/apiops-worker/files/alerts.rules.yml

TEST_CHECKS += check-helm
