{{/* Labels on every object: the standard app.kubernetes.io set plus commonLabels. */}}
{{- define "gpusched.labels" -}}
app.kubernetes.io/part-of: gpusched
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: call with (dict "ctx" $ "name" "gpusched-extender"). */}}
{{- define "gpusched.componentLabels" -}}
app.kubernetes.io/name: {{ .name }}
{{ include "gpusched.labels" .ctx }}
{{- end -}}

{{/* The selector of one component's pods (stable across upgrades). */}}
{{- define "gpusched.selector" -}}
app.kubernetes.io/name: {{ . }}
{{- end -}}

{{- define "gpusched.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* kube-scheduler's image: scheduler.image.tag, else the cluster's own version, as the
version-skew policy wants (never newer than the API server). A vendor's suffix such as
v1.33.4-eks-1a2b3c or v1.33.4+k3s1 is dropped: registry.k8s.io tags upstream releases. */}}
{{- define "gpusched.schedulerImage" -}}
{{- $s := .Values.scheduler.image -}}
{{- $tag := $s.tag | default (regexFind "^v[0-9]+\\.[0-9]+\\.[0-9]+" .Capabilities.KubeVersion.Version) -}}
{{- if not $tag -}}
{{- fail (printf "scheduler.image.tag: cannot derive kube-scheduler's tag from the cluster's version %q; set it" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{ $s.repository }}:{{ $tag }}
{{- end -}}

{{/* The extender's URL as kube-scheduler calls it. */}}
{{- define "gpusched.extenderURL" -}}
{{ ternary "https" "http" .Values.extender.tls.enabled }}://127.0.0.1:{{ .Values.extender.port }}
{{- end -}}

{{/* Pod-level security context of the restricted Pod Security profile. */}}
{{- define "gpusched.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context of the restricted Pod Security profile. */}}
{{- define "gpusched.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "gpusched.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
- name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* ServiceAccount user name, for the admission policies' matchConditions. */}}
{{- define "gpusched.saUser" -}}
system:serviceaccount:{{ .ns }}:{{ .name }}
{{- end -}}
