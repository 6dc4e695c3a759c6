{{/* The Service and PVC template shared by the in-cluster stores.
     Call with (dict "ctx" $ "component" "redis" "port" 6379). */}}
{{- define "flywheel.storeService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "flywheel.fullname" .ctx }}-{{ .component }}
  labels:
    {{- include "flywheel.labels" .ctx | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  type: ClusterIP
  selector:
    {{- include "flywheel.selectorLabels" . | nindent 4 }}
  ports:
    - name: {{ .component }}
      port: {{ .port }}
      targetPort: {{ .port }}
      protocol: TCP
{{- end -}}

{{/* Call with (dict "persistence" .Values.redis.persistence). */}}
{{- define "flywheel.storeClaim" -}}
volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      {{- with .persistence.storageClass }}
      storageClassName: {{ . | quote }}
      {{- end }}
      resources:
        requests:
          storage: {{ .persistence.size }}
{{- end -}}

{{- define "flywheel.storeSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
{{- end -}}
