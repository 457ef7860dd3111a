#!/usr/bin/env bash
# The firm-scale runs of the README's Performance section, one axis at a time: 10, 100 and
# 1,000 users at 1,000 contacts per side; 100, 1,000 and 5,000 contacts per side at 100
# users. Each run appends its figures to target/perf/firm.jsonl; the plot and the growth
# tables come from there. About 35 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench firm --no-run
cargo bench --bench plot --no-run
for users in 1000 10 100; do
  SYNCHUB_BENCH_USERS=$users SYNCHUB_BENCH_CONTACTS=1000 cargo bench --bench firm
done
for contacts in 100 5000; do
  SYNCHUB_BENCH_USERS=100 SYNCHUB_BENCH_CONTACTS=$contacts SYNCHUB_BENCH_CONTACTS_ONLY=1 cargo bench --bench firm
done
cargo bench --bench plot
