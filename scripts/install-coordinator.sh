#!/usr/bin/env bash
# Installs the Staccato coordinator on this host as a systemd service: a
# system user `staccato`, a config file, and a unit that lets it write only
# its data directory. The agent's installer (install-agent.sh) is its twin
# (what they share is in install-lib.sh);
# see docs/operators.md.
#
#   sudo scripts/install-coordinator.sh --api-host 0.0.0.0
#
# --root DIR writes the files under DIR (DIR/etc/...) and changes nothing else
# on the system; --dry-run only prints what would be written and run.
set -euo pipefail

usage () {
  cat <<'EOF'
usage: install-coordinator.sh [options]

  --data-dir DIR           store, identity key and generated tokens (default /var/lib/staccato-coordinator)
  --api-host HOST          REST listen address (default 0.0.0.0)
  --api-port PORT          REST port (default 7700)
  --listen MULTIADDR       mesh listen address for agents (default /ip4/0.0.0.0/tcp/7701)
  --user USER              system user to run as (default staccato)
  --install-dir DIR        where Staccato's code is (default: the checkout holding this script)
  --node PATH              Node.js >= 22.18 to run it with (default: node on PATH)
  --root DIR               write the files under DIR instead of /, change nothing else
  --dry-run                print the files and commands, write and run nothing
EOF
}

PROG=install-coordinator
# shellcheck source=install-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/install-lib.sh"

DATA_DIR='/var/lib/staccato-coordinator' API_HOST='0.0.0.0' API_PORT=7700 LISTEN='/ip4/0.0.0.0/tcp/7701'
SERVICE_USER='staccato' ROOT='' DRY_RUN=0
INSTALL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE="$(command -v node || true)"

while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR="${2:?--data-dir needs a value}"; shift 2 ;;
    --api-host) API_HOST="${2:?--api-host needs a value}"; shift 2 ;;
    --api-port) API_PORT="${2:?--api-port needs a value}"; shift 2 ;;
    --listen) LISTEN="${2:?--listen needs a value}"; shift 2 ;;
    --user) SERVICE_USER="${2:?--user needs a value}"; shift 2 ;;
    --install-dir) INSTALL_DIR="${2:?--install-dir needs a value}"; shift 2 ;;
    --node) NODE="${2:?--node needs a value}"; shift 2 ;;
    --root) ROOT="${2:?--root needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done

[[ "$DATA_DIR" == /* ]] || die "--data-dir '$DATA_DIR' must be an absolute path"
[[ "$API_PORT" =~ ^[0-9]+$ ]] || die "--api-port '$API_PORT' must be a port number"
check_install "$INSTALL_DIR" "$NODE"
case "$LISTEN" in
  /ip4/127.*|/ip6/::1/*) echo "install-coordinator: warning: --listen '$LISTEN' is a loopback address: agents on other hosts cannot reach it" >&2 ;;
esac


CONFIG_FILE=/etc/staccato/coordinator.yaml
UNIT_FILE=/etc/systemd/system/staccato-coordinator.service

CONFIG="# Staccato coordinator, written by scripts/install-coordinator.sh. Options: docs/configuration.md.
coordinator:
  dataDir: $(yaml_quote "$DATA_DIR")
  apiHost: $(yaml_quote "$API_HOST")
  apiPort: $API_PORT
  listen: [$(yaml_quote "$LISTEN")]"

UNIT="[Unit]
Description=Staccato coordinator
Documentation=file://$INSTALL_DIR/docs/operators.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=$SERVICE_USER
Group=$SERVICE_USER
ExecStart=$NODE $INSTALL_DIR/cli/bin.ts coordinator --config $CONFIG_FILE
WorkingDirectory=$DATA_DIR
Restart=on-failure
RestartSec=5
# Exit code 2 is a configuration error: restarting would not fix it.
RestartPreventExitStatus=2
UMask=0077
LimitNOFILE=65536

# The coordinator may write only its data directory; everything else is read-only or hidden.
ProtectSystem=strict
ReadWritePaths=$(unit_paths "$DATA_DIR")
ProtectHome=yes
$UNIT_SANDBOX"

SERVICE=staccato-coordinator
write_service

cat <<EOF
Staccato coordinator installed and started.

Its addresses for agents and its tokens:
  journalctl -u staccato-coordinator -o cat | grep '^staccato coordinator:' -A4
  cat $DATA_DIR/join-token      # for scripts/install-agent.sh --join-token
  cat $DATA_DIR/api-token       # an admin API token
EOF
