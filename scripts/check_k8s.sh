#!/usr/bin/env bash
# Renders deploy/k8s with kubectl's kustomize and validates the result offline against the
# Kubernetes API schemas (kubernetes-validate --strict: unknown fields are errors too), then
# checks what the schemas cannot: that the manifests agree with the node's own flags.
# Needs kubectl and .venv from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
kubectl kustomize deploy/k8s > "$out/rendered.yaml"
.venv/bin/kubernetes-validate --strict --quiet "$out/rendered.yaml"
.venv/bin/python - "$out/rendered.yaml" <<'PY'
import sys
import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by_kind = {d["kind"]: d for d in docs}
errors = []
want = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"}
if set(by_kind) != want:
    errors.append(f"kinds {sorted(by_kind)}, expected {sorted(want)}")
dep = by_kind["Deployment"]
pod = dep["spec"]["template"]["spec"]
(node,) = pod["containers"]
args = node["args"]
flag = lambda name: args[args.index(name) + 1] if name in args else None
ports = {p["name"]: p for p in node["ports"]}

# The drain must end before Kubernetes' SIGKILL.
grace_ms = int(flag("--shutdown-grace-ms") or 30000)
if pod["terminationGracePeriodSeconds"] * 1000 <= grace_ms:
    errors.append(f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} "
                  f"is not above --shutdown-grace-ms {grace_ms}")
# The probes reach the HTTP endpoint the node serves.
metrics_port = int(flag("--metrics-listen").rsplit(":", 1)[1])
if ports["http"]["containerPort"] != metrics_port:
    errors.append(f"port http {ports['http']['containerPort']} != --metrics-listen {metrics_port}")
for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
    get = node[probe]["httpGet"]
    if (get["path"], get["port"]) != (path, "http"):
        errors.append(f"{probe} is {get}, expected {path} on port http")
quic_port = int(flag("--listen").rsplit(":", 1)[1])
if (ports["quic"]["containerPort"], ports["quic"]["protocol"]) != (quic_port, "UDP"):
    errors.append(f"port quic {ports['quic']} does not match --listen UDP {quic_port}")
# Every replica reads the one identity from the Secret, read-only.
mounts = {m["name"]: m for m in node["volumeMounts"]}
vols = {v["name"]: v for v in pod["volumes"]}
ident = mounts.get("identity", {})
if ident.get("mountPath") != flag("--identity-dir") or not ident.get("readOnly"):
    errors.append(f"--identity-dir {flag('--identity-dir')} is not the read-only identity mount {ident}")
secret = vols.get("identity", {}).get("secret", {})
if secret.get("secretName") != "prism-node-identity" or secret.get("defaultMode", 0o644) & 0o004:
    errors.append(f"identity volume {secret}: the Secret prism-node-identity, not world-readable")
# Non-root, read-only root, requests and limits.
sc, csc = pod["securityContext"], node["securityContext"]
if not (sc.get("runAsNonRoot") and csc.get("readOnlyRootFilesystem")
        and csc.get("allowPrivilegeEscalation") is False):
    errors.append("the pod must run as non-root with a read-only root file system")
res = node["resources"]
if not all(k in res.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")):
    errors.append(f"resources {res}: cpu and memory requests and limits")
# The headless Service, the PDB, the HPA and the policy select these pods.
labels = dep["spec"]["template"]["metadata"]["labels"]
svc = by_kind["Service"]["spec"]
if svc.get("clusterIP") != "None" or {p["protocol"] for p in svc["ports"] if p["name"] == "quic"} != {"UDP"}:
    errors.append("the Service must be headless with the quic port on UDP")
for kind, sel in [("Service", svc["selector"]),
                  ("PodDisruptionBudget", by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]),
                  ("NetworkPolicy", by_kind["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"])]:
    if any(labels.get(k) != v for k, v in sel.items()):
        errors.append(f"{kind} selects {sel}, not the Deployment's pods {labels}")
hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
if hpa["scaleTargetRef"]["name"] != dep["metadata"]["name"] or \
        [m["resource"]["name"] for m in hpa["metrics"]] != ["cpu"]:
    errors.append(f"the HPA must scale {dep['metadata']['name']} on cpu: {hpa}")
if errors:
    sys.exit("deploy/k8s: " + "\n  ".join(errors))
print(f"deploy/k8s: {len(docs)} resources render, validate and agree with the node's flags")
PY
