#!/usr/bin/env bash
# Throughput of this checkout against an earlier commit, interleaved in one run on the same
# machine (compare ratios, not absolute times: a shared machine is noisy):
#
#   bash scripts/bench_compare.sh a4bf026 1000 4000
#
# For each size: `nlpseg analyze` cold (empty embedding cache; the converted encoder and the
# numba cache are shared and warm) and warm (the same file again with another
# --min-cluster-size: embeddings from the cache), old then new, on real reviews from
# ../shared/data (UIT-ViSFD + ViSpamReviews, shuffled).
set -euo pipefail
rev=${1:?usage: bench_compare.sh REV SIZE...}; shift
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
git -C "$repo" worktree add -q -f "$work/old" "$rev"
trap 'git -C "$repo" worktree remove -f "$work/old"' EXIT
cd "$work"
python - "$repo" "$@" <<'PY'
import sys
import pandas as pd
data = sys.argv[1] + "/../shared/data/reviews"
a = pd.read_csv(f"{data}/uit-visfd/Train.csv")["comment"]
b = pd.read_csv(f"{data}/vispamreviews/train.csv")["Comment"]
t = pd.concat([a, b]).dropna().astype(str).sample(frac=1, random_state=1)
for n in map(int, sys.argv[2:]):
    pd.DataFrame({"id": range(n), "review": t.head(n).tolist()}).to_csv(f"r{n}.csv", index=False)
PY
for v in old new; do
  mkdir -p "home_$v"
  [ -d "${NLPSEG_HOME:-$HOME/.cache/nlpseg}/models" ] && cp -r "${NLPSEG_HOME:-$HOME/.cache/nlpseg}/models" "home_$v/"
done
for n in "$@"; do
  for v in old new; do
    pp=""; [ "$v" = old ] && pp="$work/old"
    rm -rf "home_$v/cache"
    s=$(date +%s.%N)
    NLPSEG_HOME="$work/home_$v" PYTHONPATH="$pp" python -m nlp_seg -q analyze "r$n.csv" \
      --out "o_$v" --no-report --no-audiences >/dev/null
    m=$(date +%s.%N)
    NLPSEG_HOME="$work/home_$v" PYTHONPATH="$pp" python -m nlp_seg -q analyze "r$n.csv" \
      --out "w_$v" --min-cluster-size 25 --no-report --no-audiences >/dev/null
    e=$(date +%s.%N)
    printf '%s rows  %s  cold %.1f s  warm %.1f s\n' "$n" "$v" "$(echo "$m - $s" | bc)" \
      "$(echo "$e - $m" | bc)"
  done
done
