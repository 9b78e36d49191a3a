{{/*
Named templates of the credbroker chart.

The ones meant for other charts (documented in the README, "Adding the sidecar to your own chart")
take a context with .Values shaped like this chart's values and .Release:

  credbroker.sidecar    the sidecar container, as one YAML list item (initContainers in native
                        mode, containers in classic mode)
  credbroker.volumes    the pod volumes the sidecar mounts, as YAML list items
  credbroker.checksum   a checksum of the rendered config, for a pod annotation
  credbroker.config     the credbroker config file (the ConfigMap's config.yaml)

From a parent chart that has this chart as a dependency named "credbroker", pass
(dict "Values" .Values.credbroker "Release" .Release). Nothing here reads .Chart, so the names
come out the same in this chart and in the parent.
*/}}

{{- define "credbroker.name" -}}
{{- default "credbroker" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<name>, or the release name when it already contains the name. */}}
{{- define "credbroker.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "credbroker.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "credbroker.configMapName" -}}
{{- printf "%s-config" (include "credbroker.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{- define "credbroker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "credbroker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "credbroker.labels" -}}
{{ include "credbroker.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Chart }}
helm.sh/chart: {{ printf "%s-%s" .Name .Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .AppVersion | quote }}
{{- end }}
{{- end -}}

{{- define "credbroker.serviceAccountName" -}}
{{- if .Values.workload.serviceAccount.create -}}
{{- default (include "credbroker.fullname" .) .Values.workload.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.workload.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference from {repository, tag, digest} and a default tag */}}
{{- define "credbroker.image" -}}
{{- $img := index . 0 -}}
{{- $defaultTag := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else if or $img.tag $defaultTag -}}
{{- printf "%s:%s" $img.repository (default $defaultTag $img.tag | toString) -}}
{{- else -}}
{{- fail (printf "image %s: set a tag or a digest" $img.repository) -}}
{{- end -}}
{{- end -}}

{{/* Paths inside the sidecar container. */}}
{{- define "credbroker.configDir" -}}/etc/credbroker/config{{- end -}}
{{- define "credbroker.pairingDir" -}}/etc/credbroker/pairing{{- end -}}

{{/* Fails on duplicate names in a list of {name: …} (what: a label for the message). */}}
{{- define "credbroker.uniqueNames" -}}
{{- $what := index . 0 -}}
{{- $seen := dict -}}
{{- range (index . 1) -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "sidecar.%s: the name %q appears twice" $what .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- end -}}
{{- end -}}

{{/*
The credbroker config file. The chart owns listen, admin_listen, certificates, inbound and
destinations (plus the destination routes it appends to routes); the rest comes from
.Values.sidecar.config as it is.
*/}}
{{- define "credbroker.config" -}}
{{- $s := .Values.sidecar -}}
{{- include "credbroker.uniqueNames" (list "bindings" $s.bindings) -}}
{{- include "credbroker.uniqueNames" (list "certificates" $s.certificates) -}}
{{- $cfg := deepCopy ($s.config | default dict) -}}
{{- $_ := set $cfg "listen" (printf "127.0.0.1:%d" (int $s.listenPort)) -}}
{{- $_ := set $cfg "admin_listen" (printf "0.0.0.0:%d" (int $s.adminPort)) -}}
{{- $_ := set $cfg "allow_non_loopback" true -}}
{{- $certs := list -}}
{{- range $s.certificates -}}
{{- $c := dict "name" .name -}}
{{- if get . "binding" -}}
{{- $_ := set $c "binding" (get . "binding") -}}
{{- else -}}
{{- $_ := set $c "dir" (printf "%s/%s" (trimSuffix "/" $s.certificateRoot) .name) -}}
{{- if get . "pairing" -}}
{{- $_ := set $c "pairing_url_file" (printf "%s/%s/pairing-url" (include "credbroker.pairingDir" $) .name) -}}
{{- $_ := set $c "renew" (ternary (get . "renew") true (hasKey . "renew")) -}}
{{- if get . "twoPhase" -}}
{{- $_ := set $c "runtime_dir" (printf "%s/%s-runtime" (trimSuffix "/" $s.certificateRoot) .name) -}}
{{- end -}}
{{- if include "credbroker.persisted" . -}}
{{- $_ := set $c "persist" (dict "kubernetes_secret" (dict "name" (include "credbroker.identitySecret" (list $ .)))) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $c "renew" false -}}
{{- end -}}
{{- end -}}
{{- $certs = append $certs $c -}}
{{- end -}}
{{- if $certs -}}
{{- $_ := set $cfg "certificates" $certs -}}
{{- end -}}
{{- $certNames := dict -}}
{{- range $certs }}{{ $_ := set $certNames .name true }}{{ if hasKey . "runtime_dir" }}{{ $_ := set $certNames (printf "%s-runtime" .name) true }}{{ end }}{{ end -}}
{{- range (get $cfg "routes" | default list) -}}
{{- with (get (get . "auth" | default dict) "certificate") -}}
{{- if not (hasKey $certNames .) -}}
{{- fail (printf "sidecar.config.routes: certificate %q is not in sidecar.certificates" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $d := $s.destinations | default dict -}}
{{- if $d.routes -}}
{{- $routes := get $cfg "routes" | default list -}}
{{- range $r := $d.routes -}}
{{- $auth := dict "type" "destination" -}}
{{- range $k := list "destination" "binding" "connectivity" "tenant" "tenant_header" "user_token" "tenant_mode" "principal_exchange" -}}
{{- if hasKey $r $k -}}
{{- $_ := set $auth $k (get $r $k) -}}
{{- end -}}
{{- end -}}
{{- $route := dict "name" $r.name "auth" $auth -}}
{{- if hasKey $r "allow_plain_http" -}}
{{- $_ := set $route "allow_plain_http" (get $r "allow_plain_http") -}}
{{- end -}}
{{- $routes = append $routes $route -}}
{{- end -}}
{{- include "credbroker.uniqueNames" (list "config.routes and sidecar.destinations.routes" $routes) -}}
{{- $_ := set $cfg "routes" $routes -}}
{{- end -}}
{{- $dc := deepCopy ($d.cache | default dict) -}}
{{- with $d.connectivityProxy -}}
{{- if .host -}}
{{- $host := ternary (printf "[%s]" .host) .host (contains ":" .host) -}}
{{- $_ := set $dc "connectivity_proxy" (printf "%s:%d" $host (int (.port | default 20003))) -}}
{{- end -}}
{{- end -}}
{{- if $dc -}}
{{- $_ := set $cfg "destinations" $dc -}}
{{- end -}}
{{- if and $s.inbound.enabled $s.inbound.tlsCertificate (not (hasKey $certNames $s.inbound.tlsCertificate)) -}}
{{- fail (printf "sidecar.inbound.tlsCertificate: %q is not in sidecar.certificates" $s.inbound.tlsCertificate) -}}
{{- end -}}
{{- if $s.inbound.enabled -}}
{{- $in := dict "listen" (printf "0.0.0.0:%d" (int $s.inbound.port)) "app" (printf "http://127.0.0.1:%d" (int $s.inbound.appPort)) "rules" $s.inbound.rules -}}
{{- with $s.inbound.trustedProxies -}}
{{- $_ := set $in "trusted_proxies" . -}}
{{- end -}}
{{- with $s.inbound.tlsCertificate -}}
{{- $_ := set $in "tls" (dict "certificate" .) -}}
{{- end -}}
{{- with $s.inbound.xfcc -}}
{{- $_ := set $in "xfcc" . -}}
{{- end -}}
{{- $_ := set $cfg "inbound" $in -}}
{{- end -}}
{{- $al := $s.accessLog | default dict -}}
{{- if get $al "enabled" -}}
{{- $a := dict "enabled" true "format" (get $al "format" | default "json") -}}
{{- if hasKey $al "sample" -}}
{{- $_ := set $a "sample" (get $al "sample") -}}
{{- end -}}
{{- $_ := set $cfg "access_log" $a -}}
{{- end -}}
{{- $tr := $s.tracing | default dict -}}
{{- if get $tr "endpoint" -}}
{{- $t := dict "endpoint" (get $tr "endpoint") -}}
{{- range $k, $key := dict "protocol" "protocol" "sampler" "sampler" "samplerArg" "sampler_arg" "serviceName" "service_name" "resourceAttributes" "resource_attributes" -}}
{{- with get $tr $k -}}
{{- $_ := set $t $key . -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "tracing" $t -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "credbroker.checksum" -}}
{{- include "credbroker.config" . | sha256sum -}}
{{- end -}}

{{/* The sidecar container, as one list item. */}}
{{- define "credbroker.sidecar" -}}
{{- $s := .Values.sidecar -}}
{{- $appVersion := "" -}}
{{- with (get . "Chart") }}{{ $appVersion = .AppVersion }}{{ end -}}
- name: {{ $s.name }}
  image: {{ include "credbroker.image" (list $s.image $appVersion) | quote }}
  imagePullPolicy: {{ $s.image.pullPolicy }}
  {{- if eq $s.mode "native" }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
    - --config
    - {{ include "credbroker.configDir" . }}/config.yaml
    {{- if include "credbroker.anyPersisted" . }}
    - --service-account-dir
    - {{ include "credbroker.kubeAPIDir" . }}
    {{- end }}
    {{- range $s.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    {{- if $s.bindings }}
    - name: SERVICE_BINDING_ROOT
      value: {{ $s.bindingRoot | quote }}
    {{- end }}
    - name: CREDBROKER_LOG_LEVEL
      value: {{ $s.logLevel | quote }}
    - name: CREDBROKER_LOG_FORMAT
      value: {{ $s.logFormat | quote }}
    {{- with $s.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: cb-admin
      containerPort: {{ $s.adminPort }}
      protocol: TCP
    {{- if $s.inbound.enabled }}
    - name: cb-inbound
      containerPort: {{ $s.inbound.port }}
      protocol: TCP
    {{- end }}
  startupProbe:
    httpGet:
      path: /readyz
      port: {{ $s.adminPort }}
    {{- toYaml $s.probes.startup | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $s.adminPort }}
    {{- toYaml $s.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ $s.adminPort }}
    {{- toYaml $s.probes.readiness | nindent 4 }}
  {{- with $s.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $s.securityContext | nindent 4 }}
  volumeMounts:
    - name: credbroker-config
      mountPath: {{ include "credbroker.configDir" . }}
      readOnly: true
    {{- range $i, $b := $s.bindings }}
    - name: credbroker-binding-{{ $i }}
      mountPath: {{ printf "%s/%s" (trimSuffix "/" $s.bindingRoot) $b.name | quote }}
      readOnly: true
    {{- end }}
    {{- range $i, $c := $s.certificates }}
    {{- if not (get $c "binding") }}
    - name: credbroker-cert-{{ $i }}
      mountPath: {{ printf "%s/%s" (trimSuffix "/" $s.certificateRoot) $c.name | quote }}
      readOnly: {{ not (get $c "pairing") }}
    {{- end }}
    {{- if get $c "twoPhase" }}
    - name: credbroker-runtime-{{ $i }}
      mountPath: {{ printf "%s/%s-runtime" (trimSuffix "/" $s.certificateRoot) $c.name | quote }}
      readOnly: false
    {{- end }}
    {{- if get $c "pairing" }}
    - name: credbroker-pairing-{{ $i }}
      mountPath: {{ printf "%s/%s" (include "credbroker.pairingDir" $) $c.name | quote }}
      readOnly: true
    {{- end }}
    {{- end }}
    {{- if include "credbroker.anyPersisted" . }}
    - name: credbroker-kube-api
      mountPath: {{ include "credbroker.kubeAPIDir" . }}
      readOnly: true
    {{- end }}
    {{- with $s.volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The volumes of the sidecar, as list items. */}}
{{- define "credbroker.volumes" -}}
{{- $s := .Values.sidecar -}}
- name: credbroker-config
  configMap:
    name: {{ include "credbroker.configMapName" . }}
{{- if include "credbroker.anyPersisted" . }}
{{- /* Only the sidecar mounts the API token (the app gets none): a projected, rotated token, the cluster CA and the namespace. */}}
- name: credbroker-kube-api
  projected:
    defaultMode: {{ $s.secretDefaultMode }}
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3600
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                fieldPath: metadata.namespace
{{- end }}
{{- range $i, $b := $s.bindings }}
- name: credbroker-binding-{{ $i }}
  secret:
    secretName: {{ $b.secretName }}
    defaultMode: {{ $s.secretDefaultMode }}
{{- end }}
{{- range $i, $c := $s.certificates }}
{{- if get $c "existingSecret" }}
- name: credbroker-cert-{{ $i }}
  secret:
    secretName: {{ $c.existingSecret }}
    defaultMode: {{ $s.secretDefaultMode }}
{{- else if get $c "pairing" }}
- name: credbroker-cert-{{ $i }}
  emptyDir:
    medium: Memory
    sizeLimit: {{ get $c "sizeLimit" | default "1Mi" | quote }}
{{- if get $c "twoPhase" }}
- name: credbroker-runtime-{{ $i }}
  emptyDir:
    medium: Memory
    sizeLimit: {{ get $c "sizeLimit" | default "1Mi" | quote }}
{{- end }}
- name: credbroker-pairing-{{ $i }}
  secret:
    secretName: {{ $c.pairing.secretName }}
    defaultMode: {{ $s.secretDefaultMode }}
    items:
      - key: {{ get $c.pairing "key" | default "pairing-url" }}
        path: pairing-url
{{- end }}
{{- end }}
{{- end -}}


{{/* "true" when a certificates entry keeps its paired identity in a Secret. */}}
{{- define "credbroker.persisted" -}}
{{- if and (get . "pairing") (get . "persist") -}}
{{- if get (get . "persist") "enabled" -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when any certificates entry is persisted. */}}
{{- define "credbroker.anyPersisted" -}}
{{- range .Values.sidecar.certificates -}}
{{- if include "credbroker.persisted" . -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret a persisted certificate is kept in: (list $ certificate). */}}
{{- define "credbroker.identitySecret" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
{{- get (get $c "persist") "secretName" | default (printf "%s-%s-identity" (include "credbroker.fullname" $root) $c.name | trunc 253 | trimSuffix "-") -}}
{{- end -}}

{{- define "credbroker.kubeAPIDir" -}}/var/run/secrets/credbroker/kube-api{{- end -}}
