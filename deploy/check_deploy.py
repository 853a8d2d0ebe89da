"""Structural checks of deploy/ that need no tool beyond PyYAML (deploy/check.sh
runs it with the .cache/venv Python). Each problem is printed as
`FAIL <file>: <what>`; the exit status is the number of problems (capped).

- systemd units: the hardening and lifecycle directives Vidar relies on;
- TOML configs (deploy/**/*.toml and those embedded in Kubernetes objects):
  they parse, and are written out (placeholders filled) for `--check` runs;
  the example job files (deploy/jobs/) for `vidar-master jobs submit`;
- compose.yaml: references (services, volumes, networks, files, build contexts);
- Kubernetes manifests: every container's securityContext, resources and probes,
  and the kustomization's resource list;
- Containerfiles: COPY sources and cargo packages exist.
"""

from __future__ import annotations

import pathlib
import re
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
problems: list[str] = []

# A syntactically valid hash (of "vidar-demo"), for --check runs of templates.
DEMO_HASH = "pbkdf2-sha256$600000$RBefAysBS3+d63MBVuvM7Q==$RPzva2Y77kvRt0HjK8r2EtAjprqt6DJ2rMT38n7JK68="


def fail(path: pathlib.Path | str, what: str) -> None:
    rel = path.relative_to(ROOT) if isinstance(path, pathlib.Path) else path
    problems.append(f"FAIL {rel}: {what}")


# ---------------------------------------------------------------- systemd
def unit_settings(path: pathlib.Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


COMMON = {
    "User": "vidar",
    "Group": "vidar",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "UMask": "0077",
    "RestrictNamespaces": "yes",
    "SystemCallArchitectures": "native",
    "ConfigurationDirectory": "vidar",
}
SERVICES = {
    "vidar-edge.service": {
        "StateDirectory": "vidar",
        "Restart": "on-failure",
        "Environment": None,  # checked below
        "MemoryDenyWriteExecute": "no",
    },
    "vidar-master.service": {
        "StateDirectory": "vidar",
        "Restart": "on-failure",
        "MemoryDenyWriteExecute": "yes",
    },
    "vidar-camera@.service": {"Restart": "on-failure"},
}


def check_units() -> None:
    for name, extra in SERVICES.items():
        path = DEPLOY / "systemd" / name
        if not path.is_file():
            fail(path, "missing")
            continue
        s = unit_settings(path)
        for key, want in {**COMMON, **extra}.items():
            if want is None:
                continue
            got = s.get(key)
            if got is None or got[-1] != want:
                fail(path, f"{key}={want} expected, found {got!r}")
        if "@system-service" not in s.get("SystemCallFilter", []):
            fail(path, "SystemCallFilter=@system-service missing")
        families = " ".join(s.get("RestrictAddressFamilies", []))
        if not families or "AF_PACKET" in families:
            fail(path, f"RestrictAddressFamilies too wide or missing: {families!r}")
        stop = s.get("TimeoutStopSec", ["0"])[-1].rstrip("s")
        if name != "vidar-camera@.service" and (not stop.isdigit() or int(stop) < 30):
            fail(path, f"TimeoutStopSec {stop!r}: at least 30 s for a clean flush")
        if name == "vidar-edge.service":
            env = " ".join(s.get("Environment", []))
            for var in ("ORT_DYLIB_PATH=", "VIDAR_MODEL_DIR="):
                if var not in env:
                    fail(path, f"Environment {var}... missing")
        for cmd in s.get("ExecStart", []) + s.get("ExecStartPre", []):
            binary = cmd.split()[0].lstrip("-@+!:")
            if not binary.startswith("/usr/local/bin/vidar-"):
                fail(path, f"unexpected command {cmd!r}")
            if " run " in f" {cmd} " and "--config /etc/vidar/" not in cmd:
                fail(path, f"{cmd!r}: --config /etc/vidar/... expected")


# ---------------------------------------------------------------- TOML configs
def fill(text: str, node: str) -> str:
    return (
        text.replace("@ADMIN_PASSWORD_HASH@", DEMO_HASH)
        .replace("@NODE_ID@", node)
        .replace("tls/MASTER:7447", "tls/127.0.0.1:7447")
    )


def check_toml(origin: str, text: str, out_dir: pathlib.Path | None, kind: str) -> None:
    try:
        doc = tomllib.loads(fill(text, "edge-check"))
    except tomllib.TOMLDecodeError as e:
        fail(origin, f"TOML: {e}")
        return
    if kind == "job" and ("id" not in doc or "stage" not in doc):
        fail(origin, "job file without id or stages")
    if kind == "edge" and "node_id" not in doc:
        fail(origin, "edge config without node_id")
    if kind == "master" and "database" not in doc:
        fail(origin, "master config without database")
    if out_dir is not None:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", origin)
        (out_dir / f"{kind}--{safe}").write_text(fill(text, "edge-check"))


def kind_of(name: str, text: str) -> str:
    if "master" in name or "master_id" in text:
        return "master"
    return "edge"


def check_configs(out_dir: pathlib.Path | None) -> None:
    for path in sorted(DEPLOY.rglob("*.toml")):
        # Analytics job files (deploy/jobs/) are checked by `vidar-master jobs submit`.
        kind = "job" if path.parent == DEPLOY / "jobs" else kind_of(path.name, path.read_text())
        check_toml(str(path.relative_to(ROOT)), path.read_text(), out_dir, kind)
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in load_yaml_all(path):
            if doc.get("kind") not in ("ConfigMap", "Secret"):
                continue
            # A ConfigMap's data; a Secret's stringData (base64 `data` is not read).
            data = doc.get("data" if doc.get("kind") == "ConfigMap" else "stringData") or {}
            for key, text in data.items():
                if key.endswith(".toml"):
                    origin = f"{path.relative_to(ROOT)}#{doc['metadata']['name']}/{key}"
                    check_toml(origin, text, out_dir, kind_of(doc["metadata"]["name"], text))


# ---------------------------------------------------------------- YAML helpers
def load_yaml_all(path: pathlib.Path) -> list[dict]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        fail(path, f"YAML: {e}")
        return []


# ---------------------------------------------------------------- compose
def check_compose() -> None:
    path = DEPLOY / "container" / "compose.yaml"
    docs = load_yaml_all(path)
    if len(docs) != 1:
        fail(path, "one YAML document expected")
        return
    c = docs[0]
    services = c.get("services") or {}
    volumes = set((c.get("volumes") or {}).keys())
    networks = set((c.get("networks") or {}).keys())
    if not {"master", "camera"} <= set(services) or sum(n.startswith("edge") for n in services) < 2:
        fail(path, f"a master, a camera and 2 edges expected, found {sorted(services)}")
    for name, s in services.items():
        for dep in s.get("depends_on") or {}:
            if dep not in services:
                fail(path, f"services.{name}.depends_on: unknown service {dep}")
        for net in s.get("networks") or []:
            if net not in networks:
                fail(path, f"services.{name}.networks: undeclared network {net}")
        for v in s.get("volumes") or []:
            v = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", v) if isinstance(v, str) else v
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith((".", "/")):
                if src.startswith("./config/") and not (path.parent / src).exists():
                    fail(path, f"services.{name}.volumes: {src} does not exist")
            elif src not in volumes:
                fail(path, f"services.{name}.volumes: undeclared volume {src}")
        build = s.get("build")
        if build:
            ctx = (path.parent / build["context"]).resolve()
            if not (ctx / build["dockerfile"]).is_file():
                fail(path, f"services.{name}.build: {build['dockerfile']} not in {ctx}")
        if name != "camera" and "healthcheck" in s:
            fail(path, f"services.{name}: the image's HEALTHCHECK on /healthz is expected")
        if not s.get("read_only") or "ALL" not in (s.get("cap_drop") or []):
            fail(path, f"services.{name}: read_only and cap_drop [ALL] expected")


# ---------------------------------------------------------------- Kubernetes
def check_pod(path: pathlib.Path, obj: str, spec: dict) -> None:
    psc = spec.get("securityContext") or {}
    if not psc.get("runAsNonRoot") or (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        fail(path, f"{obj}: pod securityContext needs runAsNonRoot and seccompProfile RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        fail(path, f"{obj}: automountServiceAccountToken: false expected")
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            where = f"{obj} {group[:-1]} {c.get('name')}"
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(path, f"{where}: allowPrivilegeEscalation: false expected")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(path, f"{where}: readOnlyRootFilesystem: true expected")
            if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
                fail(path, f"{where}: capabilities drop [ALL] expected")
            res = c.get("resources") or {}
            if not res.get("requests") or not res.get("limits"):
                fail(path, f"{where}: resource requests and limits expected")
            if group == "containers":
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        fail(path, f"{where}: {probe} missing")
                paths = {(c.get(p) or {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe")}
                if "/healthz" not in paths:
                    fail(path, f"{where}: no probe on /healthz")
    if spec.get("hostNetwork"):
        fail(path, f"{obj}: hostNetwork is off by default (see the comment in edge.yaml)")


def check_k8s() -> None:
    kdir = DEPLOY / "k8s"
    kinds: dict[str, dict] = {}
    for path in sorted(kdir.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml_all(path):
            obj = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            kinds[obj] = doc
            if doc.get("kind") != "Namespace" and (doc.get("metadata") or {}).get("namespace") != "vidar":
                fail(path, f"{obj}: namespace vidar expected")
            spec = (doc.get("spec") or {}).get("template", {}).get("spec")
            if spec is not None:
                check_pod(path, obj, spec)
    dep = kinds.get("Deployment/vidar-master", {}).get("spec", {})
    if dep.get("replicas") != 1 or (dep.get("strategy") or {}).get("type") != "Recreate":
        fail(kdir / "master.yaml", "Deployment/vidar-master: replicas 1 and strategy Recreate expected")
    ds = kinds.get("DaemonSet/vidar-edge", {}).get("spec", {}).get("template", {}).get("spec", {})
    if (ds.get("nodeSelector") or {}).get("vidar.io/edge") != "true":
        fail(kdir / "edge.yaml", "DaemonSet/vidar-edge: nodeSelector vidar.io/edge: \"true\" expected")
    for needed in ("PersistentVolumeClaim/vidar-master-state", "Service/vidar-master", "ConfigMap/vidar-edge-config",
                   "Secret/vidar-master-config"):
        if needed not in kinds:
            fail(kdir, f"{needed} missing")
    # The bundles' Secrets are made with kubectl from a CA directory (docs/deploy.md),
    # never applied from here: the pods must name them, the manifests must not hold them.
    for obj, secret in (("Deployment/vidar-master", "vidar-master-bundle"), ("DaemonSet/vidar-edge", "vidar-edge-bundles")):
        vols = kinds.get(obj, {}).get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
        if secret not in {(v.get("secret") or {}).get("secretName") for v in vols}:
            fail(kdir, f"{obj}: no volume from the Secret {secret} (its cluster bundle)")
        if f"Secret/{secret}" in kinds:
            fail(kdir, f"Secret/{secret} is in the manifests: `kubectl apply -k` would replace the real bundles")
    kust = load_yaml_all(kdir / "kustomization.yaml")
    listed = set((kust[0] if kust else {}).get("resources") or [])
    present = {p.name for p in kdir.glob("*.yaml")} - {"kustomization.yaml"}
    if listed != present:
        fail(kdir / "kustomization.yaml", f"resources {sorted(listed)} differ from the files {sorted(present)}")


# ---------------------------------------------------------------- Containerfiles
def check_containerfiles() -> None:
    members = (ROOT / "Cargo.toml").read_text()
    packages = set()
    for m in re.findall(r'"([a-z-]+)"', members.split("members", 1)[1].split("]", 1)[0]):
        cargo = ROOT / m / "Cargo.toml"
        if cargo.is_file():
            found = re.search(r'^name\s*=\s*"([^"]+)"', cargo.read_text(), re.M)
            if found:
                packages.add(found.group(1))
    for path in sorted((DEPLOY / "container").glob("Containerfile.*")):
        if path.suffix == ".dockerignore":
            continue
        text = path.read_text()
        if "USER 10001" not in text or "HEALTHCHECK" not in text or "VOLUME" not in text:
            fail(path, "USER 10001, HEALTHCHECK and VOLUME expected")
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
            for src in line.split()[:-1]:
                if src != "." and not (ROOT / src).exists():
                    fail(path, f"COPY source {src} does not exist")
        for pkg in re.findall(r"-p ([a-z-]+)", text):
            if pkg not in packages:
                fail(path, f"cargo package {pkg} is not a workspace member ({sorted(packages)})")
        if not (path.parent / f"{path.name}.dockerignore").is_file():
            fail(path, f"{path.name}.dockerignore missing (the build context would include target/)")


def main() -> int:
    out_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else None
    check_units()
    check_configs(out_dir)
    check_compose()
    check_k8s()
    check_containerfiles()
    for p in problems:
        print(p)
    return min(len(problems), 100)


if __name__ == "__main__":
    sys.exit(main())
