#!/usr/bin/env bash
# The main job: builds the release binaries and starts a collector on its embedded
# SQLite store with a local agent shipping this machine's logs (/var/log/*.log where
# readable, or a demo file when there are none) and host metrics to it.
#
# Security is on, as it should be in production: the first run makes a development
# CA with server and agent certificates in var/tls (monitoring-collector certs) and a
# JWT secret; every run mints the agent a token (monitoring-collector token). Agents
# connect over wss:// with mutual TLS and the token (config/secure/*.toml), and the
# REST API serves https://.
# Ctrl-C (or SIGTERM) stops both gracefully: the agent first, so that it can deliver
# what it holds, then the collector (each runs in its own session, so Ctrl-C reaches
# only this script).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins -p monitoring-collector -p monitoring-agent
bin=target/release
collector_config=config/secure/collector.toml
mkdir -p var/run var/tls

export MONITORING_AGENT_ID="${MONITORING_AGENT_ID:-$(hostname)}"
tls=var/tls
if [ ! -f "$tls/ca.pem" ] || [ ! -f "$tls/agent-$MONITORING_AGENT_ID.pem" ]; then
    "$bin/monitoring-collector" certs --out "$tls" --agent-id "$MONITORING_AGENT_ID" \
        --server-name localhost --server-name 127.0.0.1 --force >/dev/null
    echo "made a development CA and certificates in $tls"
fi
if [ ! -s "$tls/token-secret" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 > "$tls/token-secret")
fi
MONITORING_TOKEN_SECRET="$(cat "$tls/token-secret")"
export MONITORING_TOKEN_SECRET
MONITORING_AGENT_TOKEN="$("$bin/monitoring-collector" token --config "$collector_config" \
    --agent-id "$MONITORING_AGENT_ID" --ttl 30d)"
export MONITORING_AGENT_TOKEN

agent_config=config/secure/agent.toml
readable=0
for f in /var/log/*.log; do
    if [ -f "$f" ] && [ -r "$f" ]; then readable=1; break; fi
done
demo_pid=
if [ "$readable" = 0 ]; then
    # No readable system logs: ship a demo file that grows by a line a second.
    mkdir -p var/demo
    { cat "$agent_config"; printf '\n[collectors.logs]\nfiles = ["%s/var/demo/*.log"]\n' "$PWD"; } > var/run/agent.toml
    agent_config=var/run/agent.toml
    (
        n=0
        while true; do
            n=$((n + 1))
            echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) demo[$$]: INFO demo line $n from scripts/run.sh" >> var/demo/demo.log
            sleep 1
        done
    ) &
    demo_pid=$!
fi

# The REST API needs credentials: a fresh read-only API token for this run.
"$bin/monitoring-collector" api-token revoke --config "$collector_config" --name run.sh >/dev/null 2>&1 || true
(umask 077 && "$bin/monitoring-collector" api-token create --config "$collector_config" \
    --name run.sh --role read > var/run/api-token)

setsid "$bin/monitoring-collector" run --config "$collector_config" 2> var/run/collector.log &
collector_pid=$!
agent_pid=

stop() {
    trap - INT TERM EXIT
    [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    kill -TERM "$collector_pid" 2>/dev/null && wait "$collector_pid" 2>/dev/null
    [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null
    echo "stopped."
}
trap stop INT TERM EXIT

api=https://127.0.0.1:7401
for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/7401) 2>/dev/null; then break; fi
    if ! kill -0 "$collector_pid" 2>/dev/null; then
        echo "the collector did not start; see var/run/collector.log:" >&2
        tail -n 20 var/run/collector.log >&2
        exit 1
    fi
    sleep 0.1
done

setsid "$bin/monitoring-agent" run --config "$agent_config" 2> var/run/agent.log &
agent_pid=$!

cat <<MSG

monitoring is running with TLS and authentication on:
  collector  $collector_config (data in var/collector, log var/run/collector.log)
  agent      $agent_config, id $MONITORING_AGENT_ID (log var/run/agent.log),
             shipping this machine's logs and metrics over wss:// with mutual TLS
             and a JWT (certificates and secret in $tls)

The API serves https:// with the development CA and needs a token; a read-only one
is in var/run/api-token. In another shell, from this directory:
  api() { curl -s --cacert $tls/ca.pem -H "Authorization: Bearer \$(cat var/run/api-token)" "$api\$1"; }
  api '/api/v1/logs?limit=20'
  api '/api/v1/logs?q=error&limit=20'
  api '/api/v1/agents'
  api '/api/v1/metrics/names'
  api '/api/v1/metrics?name=host_cpu_usage_percent&label=cpu=total&step=10s'
  api '/metrics'                                  # the collector's own metrics
  curl -s http://127.0.0.1:7402/metrics           # the agent's own metrics

Ctrl-C stops both.
MSG
wait "$agent_pid" "$collector_pid"
