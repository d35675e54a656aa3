"""The deployment's security line, checked on the rendered overlays and deploy/ itself.

  - secrets per role: a worker holds no token key and no database URL; nothing but the
    catalog holds the playback key (and each role holds what it needs to start);
  - egress: every Lectern pod is under an egress NetworkPolicy, no rule reaches the cloud
    metadata service, a worker reaches DNS, the queue and S3 only;
  - the Ingress routes no catch-all "/" and none of /metrics, /readyz, /healthz;
  - compose publishes ports on loopback only;
  - no file under deploy/ holds what looks like a committed key, and the generated
    development keys are git-ignored.

Usage: python security.py rendered-overlay.yaml...   (deploy/ is this file's parent's)
"""

import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
REPO = DEPLOY.parent
JWT, PLAYBACK, DATABASE = "LECTERN_JWT_SECRET", "LECTERN_PLAYBACK_SECRET", "DATABASE_URL"
# What each role must hold to start, and what it must never hold.
NEEDS = {
    "catalog": {DATABASE, "QUEUE_URL", "STORAGE_URL", JWT, PLAYBACK},
    "ingest": {DATABASE, "QUEUE_URL", "STORAGE_URL", JWT},
    "worker": {"QUEUE_URL", "STORAGE_URL"},
    "migrate": {DATABASE},
}
FORBIDDEN = {"worker": {JWT, PLAYBACK, DATABASE}}
# Cloud metadata services (AWS, GCP, Azure, …; AWS's IPv6 one).
METADATA = [ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")]
# A worker reaches DNS (53), RabbitMQ (5672, amqps 5671) and S3 (443; 8333: the dev
# overlay's SeaweedFS).
WORKER_PORTS = {53, 5671, 5672, 443, 8333}
OPERATOR_PATHS = ["/metrics", "/readyz", "/healthz"]
# A value of 32+ base64/hex characters assigned to a *SECRET*/*PASSWORD*/*TOKEN* name.
KEY_LIKE = re.compile(
    r"""(?i)([\w.-]*(?:secret|password|passwd|token|private_?key)[\w.-]*)["']?\s*[:=]\s*["']?[A-Za-z0-9+/_-]{32,}""")
GENERATED_KEY_DIRS = ["deploy/dev-keys", "deploy/k8s/overlays/dev/keys"]

problems = []


def fail(where, message):
    problems.append(f"{where}: {message}")


def matches(selector, labels):
    """Whether a label selector selects these labels ({} selects everything)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": labels.get(key) not in values,
              "Exists": key in labels,
              "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def pod_template(obj):
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]
    return spec.get("template")


def secret_keys(objects):
    """Secret name -> its keys: the rendered Secrets, else the template (Secrets
    created out of band)."""
    keys = {}
    for o in yaml.safe_load_all(open(DEPLOY / "k8s/base/secret.template.yaml")):
        keys[o["metadata"]["name"]] = set(o.get("stringData") or {}) | set(o.get("data") or {})
    for o in objects:
        if o["kind"] == "Secret":
            keys[o["metadata"]["name"]] = set(o.get("stringData") or {}) | set(o.get("data") or {})
    return keys


def held(pod, keys, where, config_maps):
    """The secret keys a pod can read (and literal env values named like one)."""
    found = set()

    def of(name):
        if name not in keys:
            fail(where, f"references Secret {name}, which neither the overlay nor "
                        "k8s/base/secret.template.yaml defines")
        return keys.get(name, set())

    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for source in c.get("envFrom") or []:
            if "secretRef" in source:
                found |= of(source["secretRef"]["name"])
            if "configMapRef" in source:
                found |= config_maps.get(source["configMapRef"]["name"], set()) & {JWT, PLAYBACK, DATABASE}
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                of(ref["name"])
                found.add(ref["key"])
            elif env["name"] in (JWT, PLAYBACK, DATABASE):
                found.add(env["name"])
    for v in spec.get("volumes") or []:
        sources = [v["secret"]] if "secret" in v else [
            s["secret"] for s in (v.get("projected") or {}).get("sources") or [] if "secret" in s]
        for s in sources:
            name = s.get("secretName") or s.get("name")
            found |= {i["key"] for i in s["items"]} if s.get("items") else of(name)
    return found


def check_secrets(objects, keys, overlay):
    config_maps = {o["metadata"]["name"]: set(o.get("data") or {}) for o in objects if o["kind"] == "ConfigMap"}
    for o in objects:
        pod = pod_template(o)
        if not pod:
            continue
        labels = (pod.get("metadata") or {}).get("labels") or {}
        role = labels.get("app.kubernetes.io/component") if labels.get("app.kubernetes.io/name") == "lectern" else None
        where = f"{overlay}: {o['kind']} {o['metadata']['name']}"
        has = held(pod, keys, where, config_maps)
        forbidden = set(FORBIDDEN.get(role, set()))
        if role != "catalog":
            forbidden.add(PLAYBACK)
        for key in sorted(has & forbidden):
            fail(where, f"holds {key} (role {role or 'none'})")
        for key in sorted(NEEDS.get(role, set()) - has):
            fail(where, f"lacks {key}, which the {role} needs")


def is_egress(policy):
    spec = policy["spec"]
    return "Egress" in (spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"]))


def check_network(objects, overlay):
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for p in policies:
        where = f"{overlay}: NetworkPolicy {p['metadata']['name']}"
        for rule in p["spec"].get("egress") or []:
            peers = rule.get("to") or []
            if not peers:
                fail(where, "an egress rule without `to` reaches every address, the metadata service too")
            for peer in peers:
                block = peer.get("ipBlock")
                if not block:
                    continue
                net = ipaddress.ip_network(block["cidr"], strict=False)
                excepted = [ipaddress.ip_network(e, strict=False) for e in block.get("except") or []]
                for addr in METADATA:
                    if addr in net and not any(addr in e for e in excepted):
                        fail(where, f"egress to {block['cidr']} reaches the metadata service {addr}")
            if not rule.get("ports"):
                fail(where, "an egress rule without ports allows every port")
        for rule in p["spec"].get("ingress") or []:
            if not rule.get("from"):
                fail(where, "an ingress rule without `from` lets every pod in")
    for o in objects:
        pod = pod_template(o)
        labels = ((pod or {}).get("metadata") or {}).get("labels") or {}
        if labels.get("app.kubernetes.io/name") != "lectern":
            continue
        where = f"{overlay}: {o['kind']} {o['metadata']['name']}"
        egress = [p for p in policies if is_egress(p) and p["metadata"].get("namespace") == o["metadata"].get("namespace")
                  and matches(p["spec"].get("podSelector"), labels)]
        if not egress:
            fail(where, "no egress NetworkPolicy selects its pods")
        if labels.get("app.kubernetes.io/component") == "worker":
            for p in egress:
                for rule in p["spec"].get("egress") or []:
                    ports = {port.get("port") for port in rule.get("ports") or []}
                    if not ports <= WORKER_PORTS:
                        fail(where, f"NetworkPolicy {p['metadata']['name']} lets workers reach ports "
                                    f"{sorted(map(str, ports - WORKER_PORTS))}: only DNS, RabbitMQ and S3")


def api_services(objects):
    """Services that send traffic to Lectern's pods."""
    return {o["metadata"]["name"] for o in objects if o["kind"] == "Service"
            and (o["spec"].get("selector") or {}).get("app.kubernetes.io/name") == "lectern"}


def check_ingress(objects, overlay):
    apis = api_services(objects)
    for ing in (o for o in objects if o["kind"] == "Ingress"):
        where = f"{overlay}: Ingress {ing['metadata']['name']}"
        spec = ing["spec"]
        regex = (ing["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/use-regex") == "true"
        if ((spec.get("defaultBackend") or {}).get("service") or {}).get("name") in apis:
            fail(where, "its defaultBackend sends every unrouted path to the API")
        for rule in spec.get("rules") or []:
            for p in (rule.get("http") or {}).get("paths") or []:
                if p["backend"].get("service", {}).get("name") not in apis:
                    continue
                path, kind = p.get("path", "/"), p.get("pathType")
                if regex:
                    fail(where, f"regex paths ({path}) cannot be checked against /metrics and /readyz")
                    continue
                service = p["backend"]["service"]["name"]
                if kind != "Exact" and path.rstrip("/") == "":
                    fail(where, f"{kind} path {path} is a catch-all to {service}")
                    continue
                for target in OPERATOR_PATHS:
                    if kind == "Exact":
                        routed = target == path
                    elif kind == "Prefix":  # whole path elements
                        routed = target == path.rstrip("/") or target.startswith(path.rstrip("/") + "/")
                    else:  # ImplementationSpecific: ingress-nginx matches a string prefix
                        routed = target.startswith(path)
                    if routed:
                        fail(where, f"{kind} path {path} routes {target} to {service}")


def check_compose():
    compose = yaml.safe_load(open(DEPLOY / "compose.yaml"))
    for name, svc in compose["services"].items():
        if svc.get("network_mode") == "host":
            fail(f"compose {name}", "network_mode: host publishes every port on every interface")
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                host_ip = port.get("host_ip", "")
            else:
                parts = str(port).rsplit(":", 2)
                host_ip = parts[0] if len(parts) == 3 else ""
            if host_ip.strip("[]") not in ("127.0.0.1", "::1"):
                fail(f"compose {name}", f"publishes {port} beyond loopback: write 127.0.0.1:HOST:CONTAINER")


def deploy_files():
    """The files under deploy/ that could be committed: tracked or not ignored."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "deploy"],
                             cwd=REPO, check=True, capture_output=True).stdout.decode()
        return [REPO / f for f in out.split("\0") if f], True
    except (OSError, subprocess.CalledProcessError):
        skip = {"node_modules", *(Path(d).name for d in GENERATED_KEY_DIRS)}
        return [p for p in DEPLOY.rglob("*") if p.is_file() and not skip & set(p.parts)], False


def check_committed_keys():
    files, in_git = deploy_files()
    for path in files:
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            m = KEY_LIKE.search(line)
            if m:
                fail(f"{path.relative_to(REPO)}:{n}", f"{m.group(1)} looks like a committed key: "
                                                      "generate it at deploy time (deploy/dev-keys.sh)")
    if in_git:
        for d in GENERATED_KEY_DIRS:
            if subprocess.run(["git", "check-ignore", "-q", f"{d}/any.env"], cwd=REPO).returncode != 0:
                fail(d, "generated development keys must be git-ignored")


def main():
    for file in sys.argv[1:]:
        overlay = Path(file).stem
        objects = [o for o in yaml.safe_load_all(open(file)) if o]
        check_secrets(objects, secret_keys(objects), overlay)
        check_network(objects, overlay)
        check_ingress(objects, overlay)
    check_compose()
    check_committed_keys()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(f"security check: {len(problems)} problem(s)")
    print(f"security: secrets per role, egress policies, ingress paths, compose ports and "
          f"committed keys checked in {len(sys.argv) - 1} overlay(s)")


if __name__ == "__main__":
    main()
