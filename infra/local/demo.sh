#!/usr/bin/env bash
# make demo: one job through the real pipeline on the local stack, against a loopback farm of
# proxies of every kind, with no network. Expects the stack up (the Makefile brings it up) and
# its environment file as $1.
set -euo pipefail
env_file=$1 bin=$2
source "$env_file"
farm_out=$(mktemp)
"$bin/farm" > "$farm_out" &
farm_pid=$!
trap 'kill $farm_pid 2>/dev/null || true; rm -f "$farm_out"' EXIT
for _ in $(seq 1 100); do [[ -s $farm_out ]] && break; sleep 0.1; done
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$farm_out" "$1"; }
echo "== a loopback farm: $(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['proxies']))" "$farm_out") proxies of every kind, plus hostile entries; source $(field source)"
echo "== proxyharvest run (trigger -> validators -> aggregator, real binaries in the local Lambda runtime)"
"$bin/proxyharvest" run --source "$(field source)" --judge "$(field judge)" \
  --judge-https "$(field judge_https)" --judge-ca "$(field judge_ca)" --allow-private || true
echo
echo "== proxyharvest get --format csv (the published list, fastest first)"
"$bin/proxyharvest" get --format csv
