{{/* Chart name. */}}
{{- define "capstan.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. Kept to 40 characters so that generated pod names,
which are the node names, stay within 63 characters.
*/}}
{{- define "capstan.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "capstan.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "capstan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "capstan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "capstan.labels" -}}
helm.sh/chart: {{ include "capstan.chart" . }}
{{ include "capstan.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: capstan
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "capstan.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "capstan.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "capstan.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret holding what the values give inline (database URL, keys, S3 credentials). */}}
{{- define "capstan.secretName" -}}
{{- include "capstan.fullname" . }}
{{- end }}

{{- define "capstan.databaseSecretName" -}}
{{- default (include "capstan.secretName" .) .Values.database.existingSecret }}
{{- end }}
{{- define "capstan.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{- define "capstan.authSecretName" -}}
{{- default (include "capstan.secretName" .) .Values.auth.existingSecret }}
{{- end }}
{{- define "capstan.masterKeyKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.masterKeyKey }}{{ else }}master-key{{ end }}
{{- end }}
{{- define "capstan.masterKeyPreviousKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.masterKeyPreviousKey }}{{ else }}master-key-previous{{ end }}
{{- end }}
{{- define "capstan.adminApiKeyKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.adminApiKeyKey }}{{ else }}admin-api-key{{ end }}
{{- end }}

{{- define "capstan.s3SecretName" -}}
{{- default (include "capstan.secretName" .) .Values.blob.s3.existingSecret }}
{{- end }}
{{- define "capstan.s3AccessKeyIdKey" -}}
{{- if .Values.blob.s3.existingSecret }}{{ .Values.blob.s3.accessKeyIdKey }}{{ else }}s3-access-key-id{{ end }}
{{- end }}
{{- define "capstan.s3SecretAccessKeyKey" -}}
{{- if .Values.blob.s3.existingSecret }}{{ .Values.blob.s3.secretAccessKeyKey }}{{ else }}s3-secret-access-key{{ end }}
{{- end }}

{{/* Whether the chart's own Secret has anything to hold. */}}
{{- define "capstan.needsSecret" -}}
{{- if or (not .Values.database.existingSecret) (not .Values.auth.existingSecret) (and (eq .Values.blob.type "s3") (not .Values.blob.s3.existingSecret) .Values.blob.s3.accessKeyId) }}true{{ end }}
{{- end }}

{{- define "capstan.blobClaimName" -}}
{{- default (printf "%s-blobs" (include "capstan.fullname" .)) .Values.blob.volume.existingClaim }}
{{- end }}

{{- define "capstan.blobUrl" -}}
{{- if eq .Values.blob.type "s3" }}
{{- $prefix := trimAll "/" .Values.blob.s3.prefix }}
{{- if $prefix }}{{ printf "s3://%s/%s" .Values.blob.s3.bucket $prefix }}{{ else }}{{ printf "s3://%s" .Values.blob.s3.bucket }}{{ end }}
{{- else }}
{{- "file:///var/lib/capstan/blobs" }}
{{- end }}
{{- end }}

{{/*
Milliseconds in a duration written as <digits><unit>, unit ms, s, m, h or d.
Fails on anything else.
*/}}
{{- define "capstan.durationMillis" -}}
{{- $d := toString . }}
{{- if not (regexMatch "^[0-9]+(ms|s|m|h|d)$" $d) }}
{{- fail (printf "`%s` is not a duration: write a number and one unit, e.g. 500ms, 10s, 5m, 1h, 30d" $d) }}
{{- end }}
{{- $n := regexFind "^[0-9]+" $d | atoi }}
{{- $unit := regexReplaceAll "^[0-9]+" $d "" }}
{{- if eq $unit "ms" }}{{ $n }}
{{- else if eq $unit "s" }}{{ mul $n 1000 }}
{{- else if eq $unit "m" }}{{ mul $n 60000 }}
{{- else if eq $unit "h" }}{{ mul $n 3600000 }}
{{- else }}{{ mul $n 86400000 }}
{{- end }}
{{- end }}

{{/* Whole seconds in a duration, rounded up. */}}
{{- define "capstan.durationSeconds" -}}
{{- div (add (include "capstan.durationMillis" . | atoi) 999) 1000 }}
{{- end }}

{{/* The seconds the preStop hook may take at most: drain timeout + settle. */}}
{{- define "capstan.preStopSeconds" -}}
{{- add (include "capstan.durationSeconds" .Values.drain.timeout | atoi) (int .Values.drain.settleSeconds) }}
{{- end }}

{{/*
terminationGracePeriodSeconds: computed, or the given value if it leaves room for the
preStop drain and the shutdown grace.
*/}}
{{- define "capstan.terminationGrace" -}}
{{- $preStop := include "capstan.preStopSeconds" . | atoi }}
{{- $grace := include "capstan.durationSeconds" .Values.config.shutdownGrace | atoi }}
{{- $needed := add $preStop $grace }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $needed 30 }}
{{- else }}
{{- $given := int .Values.terminationGracePeriodSeconds }}
{{- if le $given $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed the preStop drain (drain.timeout %s + drain.settleSeconds %d = %ds) plus config.shutdownGrace (%s = %ds), i.e. be more than %d; leave it null to compute it" $given .Values.drain.timeout (int .Values.drain.settleSeconds) $preStop .Values.config.shutdownGrace $grace $needed) }}
{{- end }}
{{- $given }}
{{- end }}
{{- end }}

{{/*
Checks the schema cannot express, with messages that say what to set.
*/}}
{{- define "capstan.validate" -}}
{{- if and (not .Values.database.url) (not .Values.database.existingSecret) }}
{{- fail "database: set database.url (postgres://user:password@host:5432/capstan) or database.existingSecret; the chart does not run PostgreSQL" }}
{{- end }}
{{- if not .Values.auth.existingSecret }}
{{- if not .Values.auth.masterKey }}
{{- fail "auth.masterKey is required (openssl rand -base64 32), or set auth.existingSecret" }}
{{- end }}
{{- if lt (len .Values.auth.adminApiKey) 16 }}
{{- fail "auth.adminApiKey is required and must have at least 16 characters (openssl rand -hex 24), or set auth.existingSecret" }}
{{- end }}
{{- end }}
{{- if eq .Values.blob.type "s3" }}
{{- if not .Values.blob.s3.bucket }}
{{- fail "blob.type s3 needs blob.s3.bucket" }}
{{- end }}
{{- if and (not .Values.blob.s3.existingSecret) (ne (empty .Values.blob.s3.accessKeyId) (empty .Values.blob.s3.secretAccessKey)) }}
{{- fail "blob.s3.accessKeyId and blob.s3.secretAccessKey go together: set both (or blob.s3.existingSecret), or neither" }}
{{- end }}
{{- else if eq .Values.blob.type "volume" }}
{{- if and (not .Values.blob.volume.existingClaim) (not .Values.blob.volume.size) }}
{{- fail "blob.type volume needs blob.volume.existingClaim or blob.volume.size (a ReadWriteMany claim is created)" }}
{{- end }}
{{- else }}
{{- fail (printf "blob.type must be s3 or volume, not %q" (toString .Values.blob.type)) }}
{{- end }}
{{- $hb := include "capstan.durationMillis" .Values.config.heartbeatInterval | atoi }}
{{- $lease := include "capstan.durationMillis" .Values.config.leaseTtl | atoi }}
{{- if lt $hb 50 }}
{{- fail (printf "config.heartbeatInterval (%s) must be at least 50ms" .Values.config.heartbeatInterval) }}
{{- end }}
{{- if lt $lease (mul 3 $hb) }}
{{- fail (printf "config.leaseTtl (%s) must be at least three config.heartbeatInterval (%s)" .Values.config.leaseTtl .Values.config.heartbeatInterval) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
