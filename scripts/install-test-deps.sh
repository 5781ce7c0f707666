#!/usr/bin/env bash
# Installs the real servers the integration tests start (each on a free port, by a fixture):
# Mosquitto, InfluxDB 1.x, VictoriaMetrics and Chromium from Debian's packages, and the
# node-opcua, modbus-serial and Sparkplug B (sparkplug-payload) peers from npm. Installs with apt
# when run as root; otherwise says exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A binary_of=(
  [mosquitto]=/usr/sbin/mosquitto
  [mosquitto-clients]=/usr/bin/mosquitto_sub
  [influxdb]=/usr/bin/influxd
  [victoria-metrics]=/usr/bin/victoria-metrics
  [chromium]=/usr/bin/chromium
)
missing=()
for package in "${!binary_of[@]}"; do
  [ -x "${binary_of[$package]}" ] || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing with apt: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "The tests need these Debian packages: ${missing[*]}" >&2
    echo "Install them with:  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
# Debian starts the services it installs; the tests start their own on free ports.
for service in mosquitto influxdb victoria-metrics; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
  fi
done

# The independent OPC UA peer (node-opcua), when its test server is present.
if [ -f tests/opcua_peer/package.json ]; then
  if [ ! -d tests/opcua_peer/node_modules/node-opcua ]; then
    command -v npm >/dev/null || { echo "npm is needed for the node-opcua peer tests: apt-get install npm" >&2; exit 1; }
    (cd tests/opcua_peer && npm install --no-audit --no-fund --silent)
  fi
fi

# The independent Modbus TCP peer (modbus-serial's ServerTCP); its serial-port addon is optional
# and not needed for TCP, so it is left out (no native build).
if [ -f tests/modbus_peer/package.json ]; then
  if [ ! -d tests/modbus_peer/node_modules/modbus-serial ]; then
    command -v npm >/dev/null || { echo "npm is needed for the Modbus peer tests: apt-get install npm" >&2; exit 1; }
    (cd tests/modbus_peer && npm ci --no-audit --no-fund --silent --omit=optional)
  fi
fi

# The independent Sparkplug B peer: Eclipse Tahu's JavaScript payload library (sparkplug-payload)
# over MQTT.js, an edge node and a host/decoder for the Sparkplug connector's and sink's tests.
if [ -f tests/sparkplug_peer/package.json ]; then
  if [ ! -d tests/sparkplug_peer/node_modules/sparkplug-payload ]; then
    command -v npm >/dev/null || { echo "npm is needed for the Sparkplug B peer tests: apt-get install npm" >&2; exit 1; }
    (cd tests/sparkplug_peer && npm ci --no-audit --no-fund --silent)
  fi
fi
