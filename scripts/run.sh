#!/usr/bin/env bash
# The main job: builds the release binaries and starts a collector on its embedded
# SQLite store with a local agent shipping this machine's logs (/var/log/*.log where
# readable, or a demo file when there are none) and host metrics to it.
# Ctrl-C (or SIGTERM) stops both gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins -p monitoring-collector -p monitoring-agent
bin=target/release
mkdir -p var/run

agent_config=config/agent.toml
readable=0
for f in /var/log/*.log; do
    if [ -f "$f" ] && [ -r "$f" ]; then readable=1; break; fi
done
demo_pid=
if [ "$readable" = 0 ]; then
    # No readable system logs: ship a demo file that grows by a line a second.
    mkdir -p var/demo
    sed 's|^files = .*|files = ["'"$PWD"'/var/demo/*.log"]|' config/agent.toml > var/run/agent.toml
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
"$bin/monitoring-collector" api-token revoke --config config/collector.toml --name run.sh 2>/dev/null || true
(umask 077 && "$bin/monitoring-collector" api-token create --config config/collector.toml \
    --name run.sh --role read > var/run/api-token)

"$bin/monitoring-collector" run --config config/collector.toml 2> var/run/collector.log &
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

api=http://127.0.0.1:7401
for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/7401) 2>/dev/null; then break; fi
    if ! kill -0 "$collector_pid" 2>/dev/null; then
        echo "the collector did not start; see var/run/collector.log:" >&2
        tail -n 20 var/run/collector.log >&2
        exit 1
    fi
    sleep 0.1
done

"$bin/monitoring-agent" run --config "$agent_config" 2> var/run/agent.log &
agent_pid=$!

cat <<MSG

monitoring is running: a collector (config/collector.toml, data in var/collector)
and an agent ($agent_config) shipping this machine's logs and metrics to it.

The collector's API needs a token; a read-only one is in var/run/api-token:
  curl -H "Authorization: Bearer \$(cat var/run/api-token)" '$api/api/v1/agents'

  logs:          $api/api/v1/logs?limit=20
  search:        $api/api/v1/logs?q=error&limit=20
  agents:        $api/api/v1/agents
  metric names:  $api/api/v1/metrics/names
  a metric:      $api/api/v1/metrics?name=host_cpu_usage_percent&label=cpu=total&step=10s
  collector:     $api/health  $api/metrics   (log: var/run/collector.log)
  agent:         http://127.0.0.1:7402/health  http://127.0.0.1:7402/metrics   (log: var/run/agent.log)

Ctrl-C stops both.
MSG
wait "$agent_pid" "$collector_pid"
