#!/usr/bin/env bash
# Starts (or stops) the real servers the storage tests use, on loopback, with their
# data under $MONITORING_SERVICES_DIR (default /var/tmp/monitoring-services):
#   PostgreSQL 15   127.0.0.1:55432   user postgres, trust auth (loopback only)
#   ClickHouse      127.0.0.1:58123   HTTP interface, user default, no password
#   Prometheus      127.0.0.1:59090   with its remote-write receiver
# Ports away from the defaults so that servers already on this machine are left
# alone. Idempotent: a server that answers is left running. The tests read
# MONITORING_TEST_POSTGRES_URL, MONITORING_TEST_CLICKHOUSE_URL and
# MONITORING_TEST_PROMETHEUS_URL (defaults: the addresses above) and fail when the
# server does not answer.
#   scripts/services.sh [start|stop|status]
set -euo pipefail

dir="${MONITORING_SERVICES_DIR:-/var/tmp/monitoring-services}"
pg_port=55432 ch_http=58123 ch_tcp=59000 ch_inter=59009 prom_port=59090
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

as_pg() {  # PostgreSQL refuses to run as root
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_up() { [[ -n $pg_bin ]] && "$pg_bin/pg_isready" -q -h 127.0.0.1 -p $pg_port; }
ch_up() { curl -fsS "http://127.0.0.1:$ch_http/?query=SELECT%201" >/dev/null 2>&1; }
prom_up() { curl -fsS "http://127.0.0.1:$prom_port/-/ready" >/dev/null 2>&1; }

wait_for() {  # wait_for NAME CHECK LOG
    for _ in $(seq 1 120); do "$2" && return 0; sleep 0.5; done
    echo "scripts/services.sh: $1 did not start; its log:" >&2
    tail -n 40 "$3" >&2 || true
    return 1
}

start_postgres() {
    pg_up && return 0
    [[ -n $pg_bin ]] || { echo "PostgreSQL is not installed (scripts/deps.sh)" >&2; return 1; }
    local data="$dir/postgres"
    mkdir -p "$data"
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$data"
    if [[ ! -f $data/PG_VERSION ]]; then
        as_pg "$pg_bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >"$dir/postgres-initdb.log"
    fi
    # fsync stays on: the tests rely on commits being durable, as in production.
    as_pg "$pg_bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-p $pg_port -k $data -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
    wait_for PostgreSQL pg_up "$data/server.log"
}

start_clickhouse() {
    ch_up && return 0
    command -v clickhouse-server >/dev/null || { echo "ClickHouse is not installed (scripts/deps.sh)" >&2; return 1; }
    local d="$dir/clickhouse"
    mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/format_schemas" "$d/log"
    # The packaged config with every path and port moved into $d, loopback only.
    sed -e "s#/var/lib/clickhouse/tmp/#$d/tmp/#; s#/var/lib/clickhouse/user_files/#$d/user_files/#" \
        -e "s#/var/lib/clickhouse/format_schemas/#$d/format_schemas/#; s#/var/lib/clickhouse/#$d/data/#" \
        -e "s#/var/log/clickhouse-server/#$d/log/#g" \
        -e "s#<http_port>8123</http_port>#<http_port>$ch_http</http_port>#" \
        -e "s#<tcp_port>9000</tcp_port>#<tcp_port>$ch_tcp</tcp_port>#" \
        -e "s#<interserver_http_port>9009</interserver_http_port>#<interserver_http_port>$ch_inter</interserver_http_port>#" \
        -e "\#<listen_host>::1</listen_host>#d" \
        -e "\#<https_port>#d; \#<tcp_port_secure>#d" \
        /etc/clickhouse-server/config.xml >"$d/config.xml"
    cp /etc/clickhouse-server/users.xml "$d/users.xml"
    (cd "$d" && nohup clickhouse-server --config-file="$d/config.xml" >"$d/log/stdout.log" 2>&1 &
     echo $! >"$d/pid")
    wait_for ClickHouse ch_up "$d/log/clickhouse-server.err.log"
}

start_prometheus() {
    prom_up && return 0
    command -v prometheus >/dev/null || { echo "Prometheus is not installed (scripts/deps.sh)" >&2; return 1; }
    local d="$dir/prometheus"
    mkdir -p "$d/data"
    printf 'global:\n  scrape_interval: 1m\n' >"$d/prometheus.yml"
    (cd "$d" && nohup prometheus --config.file="$d/prometheus.yml" --storage.tsdb.path="$d/data" \
        --web.listen-address=127.0.0.1:$prom_port --web.enable-remote-write-receiver \
        >"$d/server.log" 2>&1 & echo $! >"$d/pid")
    wait_for Prometheus prom_up "$d/server.log"
}

stop_pid() {
    local pidfile=$1
    [[ -f $pidfile ]] || return 0
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
}

case "${1:-start}" in
    start)
        mkdir -p "$dir"
        start_postgres
        start_clickhouse
        start_prometheus
        echo "services: postgres 127.0.0.1:$pg_port, clickhouse http://127.0.0.1:$ch_http, prometheus http://127.0.0.1:$prom_port"
        ;;
    stop)
        if [[ -n $pg_bin && -f $dir/postgres/postmaster.pid ]]; then
            as_pg "$pg_bin/pg_ctl" -D "$dir/postgres" -m fast stop >/dev/null || true
        fi
        stop_pid "$dir/clickhouse/pid"
        stop_pid "$dir/prometheus/pid"
        ;;
    status)
        pg_up && echo "postgres up" || echo "postgres down"
        ch_up && echo "clickhouse up" || echo "clickhouse down"
        prom_up && echo "prometheus up" || echo "prometheus down"
        ;;
    *) echo "usage: scripts/services.sh [start|stop|status]" >&2; exit 2 ;;
esac
