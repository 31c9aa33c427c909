#!/usr/bin/env bash
# Installs, from Debian's packages, the C libraries and real servers the tests use
# (missing ones only). Nothing is started here: scripts/services.sh starts the
# database servers on loopback, and tests start the rest themselves.
#   pkg-config, libsystemd-dev, systemd-journal-remote  the journald source (feature journald)
#   libpcap-dev, tcpdump                                the traffic source (feature pcap)
#   prometheus-node-exporter                            a real exporter to scrape
#   postgresql, clickhouse-server, clickhouse-client    the postgres and clickhouse stores
#   prometheus                                          the remote-write sink's receiver
#   curl                                                scripts/services.sh's health checks
set -euo pipefail

packages=(pkg-config libsystemd-dev systemd-journal-remote libpcap-dev tcpdump
          prometheus-node-exporter postgresql clickhouse-server clickhouse-client prometheus
          curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0

echo "Installing test dependencies: ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "scripts/deps.sh: run as root (or install sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
