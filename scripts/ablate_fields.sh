#!/usr/bin/env bash
# The effect of dropping the fields `ctr-dl features` names as candidates: the
# experiment is trained as it is and then without the weakest 1, 2, ... K
# candidate columns (cumulatively, least important first), and the runs are
# compared in one table.
#
#   scripts/ablate_fields.sh EXPERIMENT RUN [K]
#   scripts/ablate_fields.sh experiments/deepfm.toml runs/deepfm-20261130-0000 3
#
# RUN is a finished run of EXPERIMENT (its `features --run` ranking is computed
# when field_importance.json is missing). Only inputs that are dataset columns
# can be dropped through `features.exclude` (time parts, crosses and other
# derived inputs are listed but kept), and the runs replace the experiment's
# own `features.exclude`. EXTRA adds settings to every run; runs go to
# runs/ablate-fields-<k>-<time>.
set -euo pipefail
cd "$(dirname "$0")/.."
exp=${1:?usage: scripts/ablate_fields.sh EXPERIMENT RUN [K]}
run=${2:?usage: scripts/ablate_fields.sh EXPERIMENT RUN [K]}
k=${3:-3}
bin=${CTR_DL:-target/release/ctr-dl}
[ -x "$bin" ] || cargo build --release --locked --features lightgbm
[ -f "$run/field_importance.json" ] || $bin features --run "$run" >/dev/null
mapfile -t cands < <(python3 - "$run/field_importance.json" "$k" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = [f for f in r["fields"] if f.get("drop_reason")]
for f in c:
    if not f.get("column"):
        print(f"ablate_fields: {f['name']} is derived, not a dataset column: kept", file=sys.stderr)
c = sorted((f for f in c if f.get("column")), key=lambda f: f["auc_drop"])
for f in c[: int(sys.argv[2])]:
    print(f["column"])
PY
)
[ ${#cands[@]} -gt 0 ] || { echo "ablate_fields: $run names no dataset column to drop"; exit 0; }
stamp=$(date -u +%Y%m%d-%H%M%S)
runs=()
for i in $(seq 0 ${#cands[@]}); do
  drop=("${cands[@]:0:$i}")
  list=$(printf '"%s",' "${drop[@]}")
  list="[${list%,}]"
  [ "$i" = 0 ] && list="[]"
  name="ablate-fields-$i-$stamp"
  echo "== without $list"
  # shellcheck disable=SC2086
  $bin train --config "$exp" --set "features.exclude=$list" ${EXTRA:-} --run "$name" --quiet >/dev/null
  runs+=("runs/$name")
done
echo
echo "== dropping the candidates of $run, weakest first: ${cands[*]}"
$bin compare "${runs[@]}" --sort run
