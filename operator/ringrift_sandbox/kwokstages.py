"""KWOK lifecycle stages for the sandbox (KWOK 0.8 runs no stages unless configured).

Nodes: initialise (Ready conditions, addresses) once, then a slow condition heartbeat; KWOK's
lease controller renews node leases, which is what keeps a node Ready. Pods bound to a managed
node: made Running with an IP; deleted ones have their finalizers cleared and are removed (there is
no kubelet to do it). Completing the operator's workload pods is the workload simulator's job.
"""

from __future__ import annotations

_NODE_INITIALIZE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sandbox-node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: .status.conditions
      operator: DoesNotExist
  next:
    statusTemplate: |
      conditions:
      {{ range NodeConditions }}
      - type: {{ .type }}
        status: "{{ .status }}"
        reason: "{{ .reason }}"
        message: "{{ .message }}"
        lastHeartbeatTime: {{ Now }}
        lastTransitionTime: {{ Now }}
      {{ end }}
      addresses:
      - type: InternalIP
        address: {{ NodeIP }}
      - type: Hostname
        address: {{ .metadata.name }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: 10250
      phase: Running
"""

_NODE_HEARTBEAT = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sandbox-node-heartbeat
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: .status.phase
      operator: In
      values: [Running]
    - key: '.metadata.annotations["sandbox.ringrift.ai/lost"]'
      operator: DoesNotExist
  delay:
    durationMilliseconds: 60000
    jitterDurationMilliseconds: 65000
  next:
    statusTemplate: |
      conditions:
      {{ range NodeConditions }}
      - type: {{ .type }}
        status: "{{ .status }}"
        reason: "{{ .reason }}"
        message: "{{ .message }}"
        lastHeartbeatTime: {{ Now }}
      {{ end }}
"""

_POD_READY = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sandbox-pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: .metadata.deletionTimestamp
      operator: DoesNotExist
    - key: .status.podIP
      operator: DoesNotExist
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - type: Initialized
        status: "True"
        lastTransitionTime: {{ $now }}
      - type: ContainersReady
        status: "True"
        lastTransitionTime: {{ $now }}
      - type: Ready
        status: "True"
        lastTransitionTime: {{ $now }}
      - type: PodScheduled
        status: "True"
        lastTransitionTime: {{ $now }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name }}
        image: {{ .image }}
        imageID: ""
        ready: true
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now }}
      {{ end }}
      hostIP: {{ NodeIP }}
      podIP: {{ PodIP }}
      phase: Running
      startTime: {{ $now }}
"""

_POD_DELETE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sandbox-pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: .metadata.deletionTimestamp
      operator: Exists
  next:
    finalizers:
      empty: true
    delete: true
"""

KWOK_CONFIG = """\
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 16
  nodePlayStageParallelism: 8
  nodeLeaseParallelism: 8
  podsOnNodeSyncParallelism: 8
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
"""


def kwok_config_yaml() -> str:
    """The KWOK configuration file: options plus every stage, as one multi-document YAML."""
    docs = [KWOK_CONFIG, _NODE_INITIALIZE, _NODE_HEARTBEAT, _POD_READY, _POD_DELETE]
    return "---\n".join(docs)
