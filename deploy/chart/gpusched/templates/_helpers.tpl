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

{{/* The DRA plugin's host directories: its socket's, the kubelet's plugin registry, CDI.
The DaemonSet mounts exactly these (templates/dra-plugin.yaml) and the agent namespace's
admission policy admits them, as UID 0, only in that pod (agent-admission-policy.yaml). */}}
{{- define "gpusched.draPaths" -}}
{{- $k := .Values.agent.dra.kubeletDir -}}
{{ list (printf "%s/plugins/gpu.gpusched.io" $k) (printf "%s/plugins_registry" $k) .Values.agent.dra.cdiDir | toJson }}
{{- end -}}

{{/* The DRA plugin container's args: one list for the DaemonSet and for the admission
policy, which admits that container as root only with exactly these. */}}
{{- define "gpusched.draPluginArgs" -}}
{{- $paths := include "gpusched.draPaths" . | fromJsonArray -}}
{{- $args := list "agent" "--dra-only" -}}
{{- if .Values.agent.requireGpus }}{{ $args = append $args "--require-gpus" }}{{ end -}}
{{- $args = append $args (printf "--metrics-port=%v" .Values.agent.metricsPort) -}}
{{- $args = append $args (printf "--dra-plugin-dir=%s" (index $paths 0)) -}}
{{- $args = append $args (printf "--dra-registry-dir=%s" (index $paths 1)) -}}
{{- $args = append $args (printf "--cdi-dir=%s" (index $paths 2)) -}}
{{- if .Values.agent.dra.nvidiaCdi }}{{ $args = append $args "--nvidia-cdi" }}{{ end -}}
{{ $args | toJson }}
{{- end -}}
