{{/* Names and labels. */}}
{{- define "flywheel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flywheel.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "flywheel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "flywheel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "api"). */}}
{{- define "flywheel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flywheel.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "flywheel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flywheel.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "flywheel.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-credentials" (include "flywheel.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "flywheel.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Environment of every Flywheel container: the names settings.py reads, nothing else. */}}
{{- define "flywheel.env" -}}
- name: FLYWHEEL_AUTH_ENABLED
  value: {{ .Values.config.authEnabled | toString | quote }}
- name: FLYWHEEL_DATA_DIR
  value: {{ .Values.config.dataDir | quote }}
- name: FLYWHEEL_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: FLYWHEEL_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: FLYWHEEL_GPU_BUDGET
  value: {{ .Values.config.gpuBudget | toString | quote }}
- name: FLYWHEEL_MAX_REQUEST_BYTES
  value: {{ .Values.config.maxRequestBytes | int64 | toString | quote }}
{{- with .Values.config.corsOrigins }}
- name: FLYWHEEL_CORS_ORIGINS
  value: {{ toJson . | quote }}
{{- end }}
{{- with .Values.config.workflowQueuePrefix }}
- name: FLYWHEEL_WORKFLOW_QUEUE_PREFIX
  value: {{ . | quote }}
{{- end }}
{{- if .Values.config.jobConfig }}
- name: FLYWHEEL_CONFIG
  value: /etc/flywheel/config/job-config.yaml
{{- end }}
- name: MONGODB_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "flywheel.secretName" . }}
      key: MONGODB_URL
- name: MONGODB_DB
  value: {{ .Values.config.mongodbDb | quote }}
- name: ELASTICSEARCH_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "flywheel.secretName" . }}
      key: ELASTICSEARCH_URL
- name: ES_COLLECTION_NAME
  value: {{ .Values.config.esCollectionName | quote }}
- name: ES_VERIFY_CERTS
  value: {{ .Values.config.esVerifyCerts | toString | quote }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "flywheel.secretName" . }}
      key: REDIS_URL
{{- with .Values.config.nmp.baseUrl }}
- name: NMP_BASE_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.nmp.datastoreUrl }}
- name: NMP_DATASTORE_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.nmp.nimUrl }}
- name: NMP_NIM_URL
  value: {{ . | quote }}
{{- end }}
- name: NMP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "flywheel.secretName" . }}
      key: NMP_TOKEN
      optional: true
- name: NMP_VERIFY_SSL
  value: {{ .Values.config.nmp.verifySsl | toString | quote }}
{{- with .Values.config.tls.esCaCerts }}
- name: ES_CA_CERTS
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.tls.mongodbCaFile }}
- name: MONGODB_CA_FILE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.tls.redisCaCerts }}
- name: REDIS_CA_CERTS
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.tls.nmpCaBundle }}
- name: NMP_CA_BUNDLE
  value: {{ . | quote }}
{{- end }}
{{- $mlflowUri := .Values.config.mlflow.trackingUri }}
{{- if and (not $mlflowUri) .Values.mlflow.enabled }}
{{- $mlflowUri = printf "http://%s-mlflow:%d" (include "flywheel.fullname" .) (int .Values.mlflow.port) }}
{{- end }}
{{- with $mlflowUri }}
- name: MLFLOW_TRACKING_URI
  value: {{ . | quote }}
- name: MLFLOW_EXPERIMENT_NAME
  value: {{ $.Values.config.mlflow.experimentName | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes and mounts shared by every Flywheel container. */}}
{{- define "flywheel.volumes" -}}
- name: data
  emptyDir:
    sizeLimit: {{ .Values.dataVolume.sizeLimit }}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 256Mi
{{- if .Values.config.jobConfig }}
- name: job-config
  configMap:
    name: {{ include "flywheel.fullname" . }}-job-config
{{- end }}
{{- with .Values.caBundle.secretName }}
- name: ca-bundle
  secret:
    secretName: {{ . }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "flywheel.volumeMounts" -}}
- name: data
  mountPath: {{ .Values.config.dataDir }}
- name: tmp
  mountPath: /tmp
{{- if .Values.config.jobConfig }}
- name: job-config
  mountPath: /etc/flywheel/config
  readOnly: true
{{- end }}
{{- if .Values.caBundle.secretName }}
- name: ca-bundle
  mountPath: /etc/flywheel/ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every Flywheel pod. */}}
{{- define "flywheel.podCommon" -}}
serviceAccountName: {{ include "flywheel.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Queue name with the optional prefix; call with (dict "ctx" $ "queue" "flywheel.steps"). */}}
{{- define "flywheel.queueName" -}}
{{- printf "%s%s" (.ctx.Values.config.workflowQueuePrefix | default "") .queue -}}
{{- end -}}
