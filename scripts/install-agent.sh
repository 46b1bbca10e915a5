#!/usr/bin/env bash
# Installs a Staccato agent on this host as a systemd service: a system user
# `staccato`, a config file, and a unit that lets the agent touch only its
# data directory and its volumes. See docs/operators.md.
#
#   sudo scripts/install-agent.sh --name store-1 \
#     --coordinator /ip4/10.0.0.5/tcp/7701/p2p/12D3KooW... --join-token stj_... \
#     --volume images=/srv/images:ro --volume scratch=/srv/scratch
#
# --root DIR writes the files under DIR (DIR/etc/...) and changes nothing else
# on the system; --dry-run only prints what would be written and run.
set -euo pipefail

usage () {
  cat <<'EOF'
usage: install-agent.sh --name NAME --coordinator MULTIADDR [options]

  --name NAME              the agent's name, unique in the mesh (required)
  --coordinator MULTIADDR  the coordinator's mesh address, ending in /p2p/<peer id> (required)
  --join-token TOKEN       join token for the first registration
  --volume NAME=PATH[:ro]  export a directory (repeatable); :ro for read-only
  --listen MULTIADDR       mesh listen address (default /ip4/0.0.0.0/tcp/7702)
  --data-dir DIR           identity key and journal (default /var/lib/staccato)
  --status-port PORT       status endpoint on 127.0.0.1 (default 7703)
  --metrics-port PORT      Prometheus /metrics on 127.0.0.1 (default 7704; 0 for none)
  --user USER              system user to run as (default staccato)
  --install-dir DIR        where Staccato's code is (default: the checkout holding this script)
  --node PATH              Node.js >= 22.18 to run it with (default: node on PATH)
  --root DIR               write the files under DIR instead of /, change nothing else
  --dry-run                print the files and commands, write and run nothing
EOF
}

PROG=install-agent
# shellcheck source=install-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/install-lib.sh"

NAME='' COORDINATOR='' JOIN_TOKEN='' LISTEN='/ip4/0.0.0.0/tcp/7702' DATA_DIR='/var/lib/staccato'
STATUS_PORT=7703 METRICS_PORT=7704 SERVICE_USER='staccato' ROOT='' DRY_RUN=0
INSTALL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE="$(command -v node || true)"
VOLUMES=()

while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME="${2:?--name needs a value}"; shift 2 ;;
    --coordinator) COORDINATOR="${2:?--coordinator needs a value}"; shift 2 ;;
    --join-token) JOIN_TOKEN="${2:?--join-token needs a value}"; shift 2 ;;
    --volume) VOLUMES+=("${2:?--volume needs a value}"); shift 2 ;;
    --listen) LISTEN="${2:?--listen needs a value}"; shift 2 ;;
    --data-dir) DATA_DIR="${2:?--data-dir needs a value}"; shift 2 ;;
    --status-port) STATUS_PORT="${2:?--status-port needs a value}"; shift 2 ;;
    --metrics-port) METRICS_PORT="${2:?--metrics-port needs a value}"; shift 2 ;;
    --user) SERVICE_USER="${2:?--user needs a value}"; shift 2 ;;
    --install-dir) INSTALL_DIR="${2:?--install-dir needs a value}"; shift 2 ;;
    --node) NODE="${2:?--node needs a value}"; shift 2 ;;
    --root) ROOT="${2:?--root needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done

[ -n "$NAME" ] || die '--name is required'
[[ "$NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]] || die "--name '$NAME' must be 1-63 letters, digits, '.', '_' or '-'"
[ -n "$COORDINATOR" ] || die '--coordinator is required (the coordinator prints its address at start-up)'
[[ "$COORDINATOR" == */p2p/* ]] || die "--coordinator '$COORDINATOR' must end in /p2p/<coordinator peer id>"
case "$COORDINATOR" in
  /ip4/127.*|/ip6/::1/*|/dns/localhost/*|/dns4/localhost/*|/dns6/localhost/*)
    echo "install-agent: warning: --coordinator '$COORDINATOR' is a loopback address: only an agent on the coordinator's own host can reach it; use one of the other addresses the coordinator prints at start-up" >&2 ;;
esac
[[ "$DATA_DIR" == /* ]] || die "--data-dir '$DATA_DIR' must be an absolute path"
[[ "$STATUS_PORT" =~ ^[0-9]+$ ]] || die "--status-port '$STATUS_PORT' must be a port number"
[[ "$METRICS_PORT" =~ ^[0-9]+$ ]] || die "--metrics-port '$METRICS_PORT' must be a port number"
check_install "$INSTALL_DIR" "$NODE"

RW_PATHS=("$DATA_DIR") RO_PATHS=() IN_HOME=0
VOLUME_YAML=''
for v in "${VOLUMES[@]}"; do
  [[ "$v" =~ ^([A-Za-z0-9._-]+)=(/.+)$ ]] || die "--volume '$v' must look like name=/absolute/path or name=/path:ro"
  vname="${BASH_REMATCH[1]}" vpath="${BASH_REMATCH[2]}" ro=false
  case "$vpath" in *:ro) vpath="${vpath%:ro}"; ro=true ;; *:rw) vpath="${vpath%:rw}" ;; esac
  [ -d "$vpath" ] || die "--volume '$v': $vpath is not a directory"
  case "$vpath" in /home/*|/root/*|/run/user/*) IN_HOME=1 ;; esac
  if [ "$ro" = true ]; then RO_PATHS+=("$vpath"); else RW_PATHS+=("$vpath"); fi
  VOLUME_YAML+="    - { name: '$vname', root: '${vpath//\'/\'\'}', readOnly: $ro }"$'\n'
done


CONFIG_FILE=/etc/staccato/agent.yaml
UNIT_FILE=/etc/systemd/system/staccato-agent.service

CONFIG="# Staccato agent, written by scripts/install-agent.sh. Options: docs/configuration.md.
agent:
  name: $(yaml_quote "$NAME")
  coordinator: $(yaml_quote "$COORDINATOR")
$( [ -z "$JOIN_TOKEN" ] || echo "  joinToken: $(yaml_quote "$JOIN_TOKEN")" )
  dataDir: $(yaml_quote "$DATA_DIR")
  listen: [$(yaml_quote "$LISTEN")]
  statusPort: $STATUS_PORT
$( [ "$METRICS_PORT" = 0 ] || echo "  metricsPort: $METRICS_PORT" )
  volumes:$( [ ${#VOLUMES[@]} -gt 0 ] || echo ' []' )
${VOLUME_YAML}"
CONFIG="$(printf '%s\n' "$CONFIG" | sed '/^$/d')"

UNIT="[Unit]
Description=Staccato transfer agent ($NAME)
Documentation=file://$INSTALL_DIR/docs/operators.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=$SERVICE_USER
Group=$SERVICE_USER
ExecStart=$NODE $INSTALL_DIR/cli/bin.ts agent --config $CONFIG_FILE
WorkingDirectory=$DATA_DIR
Restart=on-failure
RestartSec=5
# Exit code 2 is a configuration error: restarting would not fix it.
RestartPreventExitStatus=2
UMask=0077
LimitNOFILE=65536

# The agent may write only its data directory and its read-write volumes,
# and read its read-only volumes; everything else is read-only or hidden.
ProtectSystem=strict
ReadWritePaths=$(unit_paths "${RW_PATHS[@]}")
$( [ ${#RO_PATHS[@]} -eq 0 ] || echo "ReadOnlyPaths=$(unit_paths "${RO_PATHS[@]}")" )
ProtectHome=$( [ "$IN_HOME" = 1 ] && echo read-only || echo yes )
$UNIT_SANDBOX"
UNIT="$(printf '%s\n' "$UNIT" | sed '/^$/{N;/^\n$/D}')"

SERVICE=staccato-agent
write_service

cat <<EOF
Staccato agent '$NAME' installed and started.

The agent runs as user '$SERVICE_USER', which needs access to its volumes:
$(for p in "${RO_PATHS[@]}"; do echo "  read:  $p   (e.g. setfacl -R -m u:$SERVICE_USER:rX '$p')"; done)
$(for p in "${RW_PATHS[@]:1}"; do echo "  write: $p   (e.g. setfacl -R -m u:$SERVICE_USER:rwX -m d:u:$SERVICE_USER:rwX '$p')"; done)

Check it:
  systemctl status staccato-agent
  journalctl -u staccato-agent -f
  cd $INSTALL_DIR && npx staccato agent status      (reads $CONFIG_FILE)
EOF
