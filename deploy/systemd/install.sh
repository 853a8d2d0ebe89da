#!/usr/bin/env bash
# Installs Vidar as systemd services on this machine (idempotent), or removes
# it again with --uninstall.
#
#   deploy/systemd/install.sh [--edge] [--master] [--camera] [--no-enable] [--no-start]
#   deploy/systemd/install.sh --uninstall [--purge]
#
# Without --edge/--master/--camera: whatever target/release holds (edge and
# master). What it does, each step only when needed:
#   - binaries from target/release  -> /usr/local/bin (vidar-edge, vidar-master, vidar-camera)
#   - ONNX Runtime (.cache/onnxruntime-*/libonnxruntime.so.*, made by
#     deploy/setup.sh)              -> /usr/local/lib/vidar/ (+ libonnxruntime.so link)
#   - model files listed in models/manifest.toml, from .cache/models (made by
#     `make models`)                -> /usr/local/share/vidar/models (root-owned, read-only)
#   - the system user and group `vidar` (no login, home /var/lib/vidar); added
#     to the `video` and `render` groups when they exist (hardware decoders, GPUs)
#   - /etc/vidar (root:vidar): edge.toml and master.toml from deploy/systemd/
#     only when absent (never overwritten), 0640; a random first admin password
#     for the master, in /etc/vidar/initial-admin-password (root only)
#   - cluster bundles, when present (made by `vidar-master ca init` / `enroll`,
#     never here): /etc/vidar/ca/master (master) and /etc/vidar/bundle (edge)
#     become vidar:vidar 0700 with key.pem/signing.key 0600, so the service
#     can load them; /etc/vidar/ca becomes root:vidar 0710 (the service may
#     enter it, not list it; ca.key and nodes/ stay root's)
#   - the units -> /etc/systemd/system, daemon-reload, enable (and start when
#     the config no longer has placeholders and its bundle exists; an
#     edge.toml still naming MASTER is installed but not started)
# Build first: `make models build-release` (or `cargo build --release --bins`).
#
# --uninstall stops and disables the units and removes the binaries, libraries,
# models and units; /etc/vidar and /var/lib/vidar (configs, databases) stay
# unless --purge is given (then they are deleted, with the `vidar` user).
#
# Environment: VIDAR_PREFIX (default /usr/local), VIDAR_BIN_DIR (default
# target/release), DESTDIR-like staging is not supported: run as root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PREFIX="${VIDAR_PREFIX:-/usr/local}"
BIN_SRC="${VIDAR_BIN_DIR:-$ROOT/target/release}"
LIB_DIR="$PREFIX/lib/vidar"
MODEL_DIR="$PREFIX/share/vidar/models"
DOC_DIR="$PREFIX/share/doc/vidar"
ETC=/etc/vidar
STATE=/var/lib/vidar
CACHE_DIR=/var/cache/vidar
UNIT_DIR=/etc/systemd/system
UNITS_SRC="$ROOT/deploy/systemd"

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

want_edge=0 want_master=0 want_camera=0 enable=1 start=1 uninstall=0 purge=0
for a in "$@"; do
  case "$a" in
    --edge) want_edge=1 ;;
    --master) want_master=1 ;;
    --camera) want_camera=1 ;;
    --no-enable) enable=0; start=0 ;;
    --no-start) start=0 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    -h|--help) sed -n '2,35p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument $a (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "run as root (sudo $0 $*)"
have_systemd=0
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then have_systemd=1; fi
sysctl_() { if [ "$have_systemd" = 1 ]; then systemctl "$@"; else say "(no running systemd: skipped systemctl $*)"; fi; }

# ---------------------------------------------------------------- uninstall
if [ "$uninstall" = 1 ]; then
  for u in vidar-edge.service vidar-master.service; do
    if [ -f "$UNIT_DIR/$u" ]; then
      sysctl_ disable --now "$u" || true
      rm -f "$UNIT_DIR/$u"
      say "removed $u"
    fi
  done
  for f in "$ETC"/camera-*.env; do
    [ -e "$f" ] || continue
    i="${f##*/camera-}"; i="${i%.env}"
    sysctl_ disable --now "vidar-camera@$i.service" || true
  done
  rm -f "$UNIT_DIR/vidar-camera@.service"
  sysctl_ daemon-reload
  rm -f "$PREFIX/bin/vidar-edge" "$PREFIX/bin/vidar-master" "$PREFIX/bin/vidar-camera"
  rm -rf "$LIB_DIR" "$PREFIX/share/vidar" "$DOC_DIR"
  say "removed binaries, ONNX Runtime and models under $PREFIX"
  if [ "$purge" = 1 ]; then
    rm -rf "$ETC" "$STATE" "$CACHE_DIR"
    if getent passwd vidar >/dev/null; then userdel vidar; fi
    if getent group vidar >/dev/null; then groupdel vidar 2>/dev/null || true; fi
    say "purged $ETC, $STATE (databases!), $CACHE_DIR and the vidar user"
  else
    say "kept $ETC and $STATE (configs, databases); --purge deletes them"
  fi
  exit 0
fi

# ---------------------------------------------------------------- what to install
if [ "$want_edge$want_master$want_camera" = 000 ]; then
  [ -x "$BIN_SRC/vidar-edge" ] && want_edge=1
  [ -x "$BIN_SRC/vidar-master" ] && want_master=1
  [ "$want_edge$want_master" != 00 ] || die "no binaries in $BIN_SRC: run 'make models build-release' first"
fi
[ "$want_edge" = 0 ] || [ -x "$BIN_SRC/vidar-edge" ] || die "$BIN_SRC/vidar-edge missing: make build-release"
[ "$want_master" = 0 ] || [ -x "$BIN_SRC/vidar-master" ] || die "$BIN_SRC/vidar-master missing: make build-release"
[ "$want_camera" = 0 ] || [ -x "$BIN_SRC/vidar-camera" ] || die "$BIN_SRC/vidar-camera missing: make build-release"

# copy SRC DST MODE: installs only when the content differs (keeps mtimes and
# avoids replacing a running binary for nothing).
copy() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then return 1; fi
  install -D -m "$3" -o root -g root "$1" "$2"
  return 0
}

# ---------------------------------------------------------------- user
if ! getent group vidar >/dev/null; then groupadd --system vidar; say "created group vidar"; fi
if ! getent passwd vidar >/dev/null; then
  useradd --system --gid vidar --home-dir "$STATE" --no-create-home \
          --shell /usr/sbin/nologin --comment "Vidar video analytics" vidar
  say "created system user vidar"
fi
for g in video render; do
  if getent group "$g" >/dev/null && ! id -nG vidar | tr ' ' '\n' | grep -qx "$g"; then
    usermod -a -G "$g" vidar
    say "added vidar to group $g (hardware decoders / GPU)"
  fi
done

# ---------------------------------------------------------------- binaries
changed_bins=()
for b in vidar-edge vidar-master vidar-camera; do
  case "$b" in
    vidar-edge) [ "$want_edge" = 1 ] || continue ;;
    vidar-master) [ "$want_master" = 1 ] || continue ;;
    vidar-camera) [ "$want_camera" = 1 ] || [ -x "$BIN_SRC/$b" ] || continue ;;
  esac
  if copy "$BIN_SRC/$b" "$PREFIX/bin/$b" 0755; then changed_bins+=("$b"); say "installed $PREFIX/bin/$b"; fi
done

# ---------------------------------------------------------------- ONNX Runtime + models (edge)
if [ "$want_edge" = 1 ]; then
  ort_so=$(ls "$ROOT"/.cache/onnxruntime-*/libonnxruntime.so.* 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$ort_so" ] || die "no ONNX Runtime library in $ROOT/.cache/onnxruntime-*: run deploy/setup.sh"
  if copy "$ort_so" "$LIB_DIR/${ort_so##*/}" 0644; then say "installed $LIB_DIR/${ort_so##*/}"; fi
  ln -sfn "${ort_so##*/}" "$LIB_DIR/libonnxruntime.so"

  # Only the files the manifest lists (size and sha256 are checked again at load).
  mapfile -t files < <(awk '/^\[\[file\]\]/{f=1; next} /^\[/{f=0} f && /^file *=/{gsub(/.*= *"|".*/, ""); print}' "$ROOT/models/manifest.toml")
  [ "${#files[@]}" -gt 0 ] || die "no [[file]] entries in models/manifest.toml"
  n=0 missing=()
  for f in "${files[@]}"; do
    if [ -f "$ROOT/.cache/models/$f" ]; then
      copy "$ROOT/.cache/models/$f" "$MODEL_DIR/$f" 0644 && n=$((n + 1))
    else
      missing+=("$f")
    fi
  done
  say "models: ${#files[@]} listed, $n updated in $MODEL_DIR${missing[*]:+, not in .cache/models: ${missing[*]}}"
  chmod 0755 "$PREFIX/share/vidar" "$MODEL_DIR"
fi
if [ -f "$ROOT/docs/deploy.md" ]; then copy "$ROOT/docs/deploy.md" "$DOC_DIR/deploy.md" 0644 || true; fi

# ---------------------------------------------------------------- /etc/vidar
install -d -m 0750 -o root -g vidar "$ETC"
install -d -m 0700 -o vidar -g vidar "$STATE"
install -d -m 0700 -o vidar -g vidar "$CACHE_DIR"
config() { # NAME: copy deploy/systemd/NAME to /etc/vidar/NAME when absent
  if [ -e "$ETC/$1" ]; then say "kept $ETC/$1 (exists)"; return 1; fi
  install -m 0640 -o root -g vidar "$UNITS_SRC/$1" "$ETC/$1"
  say "wrote $ETC/$1: edit it"
  return 0
}
if [ "$want_edge" = 1 ]; then config edge.toml || true; fi
if [ "$want_master" = 1 ] && config master.toml; then
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)
  hash=$(printf '%s\n' "$password" | "$PREFIX/bin/vidar-master" hash-password)
  sed -i "s#@ADMIN_PASSWORD_HASH@#$hash#" "$ETC/master.toml"
  ( umask 077; printf 'admin %s\n' "$password" > "$ETC/initial-admin-password" )
  say "first login: admin / the password in $ETC/initial-admin-password (root only); change it"
fi

# ---------------------------------------------------------------- cluster bundles
# The services run as vidar and refuse private keys readable by others, so a
# bundle must belong to vidar. Only the two paths of the example configs.
bundle_of() { # CONFIG: the directory its `bundle = "..."` line names, if any
  [ -f "$1" ] || return 0
  sed -n 's/^[[:space:]]*bundle[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | head -n1
}
own_bundle() { # DIR
  chown -R vidar:vidar "$1"
  chmod 0700 "$1"
  for k in key.pem signing.key; do
    if [ -e "$1/$k" ]; then chmod 0600 "$1/$k"; fi
  done
  say "bundle $1: vidar:vidar, 0700, private keys 0600"
}
if [ "$want_master" = 1 ] && [ -f "$ETC/ca/master/bundle.toml" ]; then
  chown root:vidar "$ETC/ca"
  chmod 0710 "$ETC/ca"
  own_bundle "$ETC/ca/master"
fi
if [ "$want_edge" = 1 ] && [ -f "$ETC/bundle/bundle.toml" ]; then own_bundle "$ETC/bundle"; fi

# ---------------------------------------------------------------- units
units=()
[ "$want_edge" = 1 ] && units+=(vidar-edge.service)
[ "$want_master" = 1 ] && units+=(vidar-master.service)
[ -x "$PREFIX/bin/vidar-camera" ] && units+=(vidar-camera@.service)
reload=0
for u in "${units[@]}"; do
  if copy "$UNITS_SRC/$u" "$UNIT_DIR/$u" 0644; then reload=1; say "installed $UNIT_DIR/$u"; fi
done
[ "$reload" = 0 ] || sysctl_ daemon-reload

for u in "${units[@]}"; do
  [ "$u" = vidar-camera@.service ] && continue
  name="${u%.service}"; cfg="$ETC/${name#vidar-}.toml"
  [ "$enable" = 1 ] || continue
  sysctl_ enable "$u" >/dev/null 2>&1 || sysctl_ enable "$u"
  if [ "$start" = 1 ] && [ "$have_systemd" = 1 ]; then
    bundle=$(bundle_of "$cfg")
    if grep -q 'MASTER:7447\|@ADMIN_PASSWORD_HASH@' "$cfg"; then
      say "$u enabled, not started: $cfg still has placeholders (MASTER); edit it, then: systemctl start $name"
    elif [ -n "$bundle" ] && [ ! -f "$bundle/bundle.toml" ]; then
      say "$u enabled, not started: no bundle in $bundle yet (vidar-master ca init / enroll, docs/deploy.md); then run this again, or chown -R vidar:vidar $bundle and systemctl start $name"
    elif systemctl is-active --quiet "$u"; then
      if [ "${#changed_bins[@]}" -gt 0 ] || [ "$reload" = 1 ]; then
        if systemctl restart "$u"; then say "restarted $u (new binary or unit)"; else say "$u failed to restart: journalctl -u $name -n 50"; failed=1; fi
      fi
    elif systemctl start "$u"; then
      say "started $u"
    else
      say "$u failed to start: journalctl -u $name -n 50"; failed=1
    fi
  fi
done
say "done. Status: systemctl status vidar-edge vidar-master; logs: journalctl -u vidar-edge -u vidar-master -f"
exit "${failed:-0}"
