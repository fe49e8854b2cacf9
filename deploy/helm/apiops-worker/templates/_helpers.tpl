{{/*
The objects' name: fullnameOverride, else the release name when it already says
apiops-worker (release apiops-worker renders the names of deploy/base), else
<release>-apiops-worker. 63 characters at most, a label value's limit.
*/}}
{{- define "apiops-worker.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Selector labels: deploy/base's two, which the PodMonitor's jobLabel and so every
alert's job="apiops-worker" rely on, plus the release, so that two releases in one
namespace do not select each other's pods.
*/}}
{{- define "apiops-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every object's labels: the selector's and Helm's usual ones. */}}
{{- define "apiops-worker.labels" -}}
{{ include "apiops-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "apiops-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "apiops-worker.fullname" .) -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: the existing ServiceAccount the pods run as" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the Secrets are mounted: directories, never subPath, so that updates reach the pods. */}}
{{- define "apiops-worker.apiopsSecretDir" -}}/var/run/secrets/apiops{{- end -}}
{{- define "apiops-worker.natsSecretDir" -}}/var/run/secrets/nats{{- end -}}
{{- define "apiops-worker.sealKeysDir" -}}/var/run/secrets/seal-keys{{- end -}}

{{/* Whether extraEnv sets the variable named by .name: {{ include "apiops-worker.extraEnvHas" (dict "root" . "name" "X") }} is "true" or "". */}}
{{- define "apiops-worker.extraEnvHas" -}}
{{- range .root.Values.extraEnv -}}
{{- if eq (toString .name) $.name -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The worker's settings, as the ConfigMap's data (a YAML map). The chart derives the
connection and secret-file settings from the values, so that each mount path and its
variable cannot disagree; it checks here what the worker would otherwise refuse only
at start-up, in a crash loop.
*/}}
{{- define "apiops-worker.settings" -}}
{{- $v := .Values -}}
{{- $tok := $v.apiops.token -}}
{{- $cc := $v.apiops.clientCredentials -}}
{{- $managed := list "NATS_URL" "NATS_CREDS" "NATS_INBOX_PREFIX" "APIOPS_URL" "APIOPS_TOKEN_FILE" "APIOPS_CLIENT_ID" "APIOPS_CLIENT_SECRET_FILE" "APIOPS_TOKEN_URL" "APIOPS_WORKER_HTTP_ADDR" "APIOPS_WORKER_SEAL_KEYS" "APIOPS_WORKER_REQUIRE_SEALED" -}}
{{- $secrets := list "NATS_PASSWORD" "APIOPS_TOKEN" "APIOPS_CLIENT_SECRET" -}}
{{- range $key, $value := $v.config -}}
{{- if has $key $managed -}}
{{- fail (printf "config.%s is set by the chart from its values (nats.*, apiops.*, sealKeys.*): set those instead" $key) -}}
{{- end -}}
{{- if has $key $secrets -}}
{{- fail (printf "config.%s would put a secret in a ConfigMap: set it in extraEnv with valueFrom.secretKeyRef" $key) -}}
{{- end -}}
{{- end -}}
{{- if not $v.apiops.url -}}
{{- fail "apiops.url is required: APIOps's base URL, e.g. https://apinizer.example.com" -}}
{{- end -}}
{{- $envToken := include "apiops-worker.extraEnvHas" (dict "root" . "name" "APIOPS_TOKEN") -}}
{{- $envSecret := include "apiops-worker.extraEnvHas" (dict "root" . "name" "APIOPS_CLIENT_SECRET") -}}
{{- if and $cc.clientId (or $tok.secretName $envToken) -}}
{{- fail "apiops.clientCredentials.clientId and a token (apiops.token.secretName, or APIOPS_TOKEN in extraEnv) are both set: the worker takes one or the other; for client credentials set apiops.token.secretName=\"\"" -}}
{{- end -}}
{{- if not (or $cc.clientId $tok.secretName $envToken) -}}
{{- fail "no APIOps credentials: set apiops.token.secretName (a Secret with the token), or apiops.clientCredentials.clientId and apiops.clientCredentials.secretName" -}}
{{- end -}}
{{- if and $cc.clientId (not (or $cc.secretName $envSecret)) -}}
{{- fail "apiops.clientCredentials.clientId needs apiops.clientCredentials.secretName: the Secret holding the client secret" -}}
{{- end -}}
{{- if and (not $cc.clientId) (or $cc.secretName $cc.tokenURL) -}}
{{- fail "apiops.clientCredentials.secretName or tokenURL is set without apiops.clientCredentials.clientId" -}}
{{- end -}}
{{- if and $v.sealKeys.requireSealed (not $v.sealKeys.enabled) -}}
{{- fail "sealKeys.requireSealed needs sealKeys.enabled: without keys no command with a secret could run" -}}
{{- end -}}
{{- if and $v.sealKeys.enabled (not $v.sealKeys.secretName) -}}
{{- fail "sealKeys.enabled needs sealKeys.secretName: the Secret holding the key seeds" -}}
{{- end -}}
{{- $s := dict -}}
{{- range $key, $value := $v.config -}}
{{- $_ := set $s $key $value -}}
{{- end -}}
{{- $_ := set $s "NATS_URL" (required "nats.url is required, e.g. nats://nats.nats.svc:4222" $v.nats.url) -}}
{{- if $v.nats.credentials.secretName -}}
{{- $_ := set $s "NATS_CREDS" (printf "%s/%s" (include "apiops-worker.natsSecretDir" .) (required "nats.credentials.key is required: the Secret's key holding the credentials file" $v.nats.credentials.key)) -}}
{{- end -}}
{{- if $v.nats.inboxPrefix -}}
{{- $_ := set $s "NATS_INBOX_PREFIX" $v.nats.inboxPrefix -}}
{{- end -}}
{{- $_ := set $s "APIOPS_URL" $v.apiops.url -}}
{{- if $tok.secretName -}}
{{- $_ := set $s "APIOPS_TOKEN_FILE" (printf "%s/%s" (include "apiops-worker.apiopsSecretDir" .) (required "apiops.token.key is required: the Secret's key holding the token" $tok.key)) -}}
{{- end -}}
{{- if $cc.clientId -}}
{{- $_ := set $s "APIOPS_CLIENT_ID" $cc.clientId -}}
{{- if $cc.secretName -}}
{{- $_ := set $s "APIOPS_CLIENT_SECRET_FILE" (printf "%s/%s" (include "apiops-worker.apiopsSecretDir" .) (required "apiops.clientCredentials.key is required: the Secret's key holding the client secret" $cc.key)) -}}
{{- end -}}
{{- if $cc.tokenURL -}}
{{- $_ := set $s "APIOPS_TOKEN_URL" $cc.tokenURL -}}
{{- end -}}
{{- end -}}
{{- $_ := set $s "APIOPS_WORKER_HTTP_ADDR" ":9090" -}}
{{- if $v.sealKeys.enabled -}}
{{- $_ := set $s "APIOPS_WORKER_SEAL_KEYS" (include "apiops-worker.sealKeysDir" .) -}}
{{- end -}}
{{- if $v.sealKeys.requireSealed -}}
{{- $_ := set $s "APIOPS_WORKER_REQUIRE_SEALED" "true" -}}
{{- end -}}
{{- range $key, $value := $s }}
{{ $key }}: {{ $value | quote }}
{{- end -}}
{{- end -}}
