#!/usr/bin/env bash
# Checks the Prometheus alerting rules shipped in deploy/prometheus: syntax
# (`promtool check rules`) and behaviour (`promtool test rules`). promtool
# comes with Debian's `prometheus` package (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../deploy/prometheus"
promtool check rules pvce-alerts.yml
promtool test rules pvce-alerts.test.yml pvce-baseline.test.yml pvce-slo.test.yml
