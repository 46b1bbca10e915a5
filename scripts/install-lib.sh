# Shared by install-agent.sh and install-coordinator.sh (sourced, never run):
# the checks, the systemd sandbox and the writing of a service's two files,
# so that the two installers cannot drift apart. The sourcing script sets
# PROG (for messages) before sourcing, and CONFIG, UNIT, CONFIG_FILE,
# UNIT_FILE, SERVICE, SERVICE_USER, DATA_DIR, ROOT and DRY_RUN before
# calling write_service.

die () { echo "$PROG: $*" >&2; exit 2; }

yaml_quote () { printf "'%s'" "${1//\'/\'\'}"; }

# systemd splits path lists on spaces; a path with one is quoted.
unit_paths () { local out='' p; for p in "$@"; do case "$p" in *' '*) out+=" \"$p\"" ;; *) out+=" $p" ;; esac; done; echo "${out# }"; }

# check_install INSTALL_DIR NODE: the checkout holds Staccato and Node runs it.
check_install () {
  [ -f "$1/cli/bin.ts" ] || die "--install-dir '$1' does not hold Staccato (no cli/bin.ts)"
  [ -n "$2" ] || die 'no node on PATH: install Node.js >= 22.18 or pass --node'
  # Type stripping without a flag, which runs the .ts files directly, arrived in Node 22.18.
  "$2" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 18) ? 0 : 1)' \
    || die "$2 is Node $("$2" --version); Staccato needs >= 22.18"
}

# The part of the unit's sandbox both services share (after their own
# ProtectSystem, ReadWritePaths and ProtectHome lines).
UNIT_SANDBOX='PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX

[Install]
WantedBy=multi-user.target'

# write_service: prints the files (--dry-run), or writes them under ROOT, or
# writes them in place, creates the user and data directory and starts the
# service. Returns only when the service was started.
write_service () {
  if [ "$DRY_RUN" = 1 ]; then
    echo "# would write ${ROOT}${CONFIG_FILE} (mode 0640, group $SERVICE_USER):"
    echo "$CONFIG"
    echo
    echo "# would write ${ROOT}${UNIT_FILE}:"
    echo "$UNIT"
    echo
    if [ -z "$ROOT" ]; then
      echo "# would run: useradd --system $SERVICE_USER (if missing); install -d -o $SERVICE_USER -m 0700 $DATA_DIR"
      echo "# would run: systemctl daemon-reload && systemctl enable --now $SERVICE"
    fi
    exit 0
  fi

  if [ -z "$ROOT" ]; then
    [ "$(id -u)" = 0 ] || die 'run as root (or pass --root DIR to render the files elsewhere)'
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
      useradd --system --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0700 "$DATA_DIR"
  fi

  install -d "${ROOT}/etc/staccato" "${ROOT}/etc/systemd/system"
  # The config may hold a token: readable by root and the service's group only.
  (umask 027 && printf '%s\n' "$CONFIG" > "${ROOT}${CONFIG_FILE}.tmp")
  mv "${ROOT}${CONFIG_FILE}.tmp" "${ROOT}${CONFIG_FILE}"
  printf '%s\n' "$UNIT" > "${ROOT}${UNIT_FILE}"
  chmod 0644 "${ROOT}${UNIT_FILE}"

  if [ -n "$ROOT" ]; then
    echo "wrote ${ROOT}${CONFIG_FILE} and ${ROOT}${UNIT_FILE}"
    exit 0
  fi

  chgrp "$SERVICE_USER" "$CONFIG_FILE"
  systemctl daemon-reload
  systemctl enable --now "$SERVICE"
}
