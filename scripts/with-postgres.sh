#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server: a new cluster in a
# temporary folder, listening on loopback only, removed afterwards. The
# command sees
#   CMC_POSTGRES_URL   postgres://postgres@127.0.0.1:PORT/cmc (trust auth)
#   CMC_POSTGRES_CTL   a command that takes stop, start or restart, and
#                      optionally pg_ctl's shutdown mode (fast, the
#                      default, immediate or smart), for tests that stop
#                      or restart the server under load:
#                        "$CMC_POSTGRES_CTL" restart immediate
# Installs Debian's postgresql package when no server binaries are found
# (apt-get update first). Run as root or as any user; as root the server
# runs as the postgres user, as initdb requires.
#
#   scripts/with-postgres.sh cargo test --workspace --all-features
#   PGPORT=55433 scripts/with-postgres.sh psql "\$CMC_POSTGRES_URL"
set -euo pipefail

find_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
bin=$(find_bin)
if [ -z "$bin" ]; then
  echo "installing PostgreSQL (Debian package postgresql)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bin=$(find_bin)
fi
[ -x "$bin/initdb" ] || { echo "no PostgreSQL server binaries found" >&2; exit 1; }

port=${PGPORT:-55432}
dir=$(mktemp -d -t cmc-postgres.XXXXXX)
chmod 755 "$dir"
if [ "$(id -u)" = 0 ]; then
  chown postgres "$dir"
  as_pg() { su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; }
else
  as_pg() { "$@"; }
fi

ctl="$dir/ctl.sh"
cat > "$ctl" <<CTL
#!/bin/sh
# stop | start | restart the throwaway server [fast | immediate | smart]
set -e
case "\$1" in stop|start|restart) ;; *) echo "usage: \$0 stop|start|restart [fast|immediate|smart]" >&2; exit 2;; esac
case "\${2:-fast}" in fast|immediate|smart) ;; *) echo "unknown shutdown mode: \$2" >&2; exit 2;; esac
cmd="$bin/pg_ctl -s -D $dir/data -l $dir/server.log -w -m \${2:-fast} \$1"
if [ "\$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "\$cmd"; else \$cmd; fi
CTL
chmod 755 "$ctl"

stop() {
  "$ctl" stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
CONF
"$ctl" start >/dev/null
as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres cmc

export CMC_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/cmc"
export CMC_POSTGRES_CTL="$ctl"
echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (CMC_POSTGRES_URL=$CMC_POSTGRES_URL)" >&2
"$@"
