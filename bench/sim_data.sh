# Sourced by the benchmarks on simulated data. `sim_data ROWS BIN` prints the
# folder of ROWS impressions simulated by BIN in the world of $SIM_CONFIG
# (default configs/datasets/synthetic.toml, which documents the simulator's
# defaults), simulating them the first time. The folder's name holds the
# world file's name and a hash of its text, so a changed world is simulated
# anew rather than read from an old folder.
sim_data() {
  local rows=$1 bin=$2 world=${SIM_CONFIG:-configs/datasets/synthetic.toml}
  [ -f "$world" ] || { echo "sim_data: no simulator config $world" >&2; return 1; }
  local dir
  dir=${BENCH_DIR:-/tmp/ctr-dl-bench}/sim-$rows-$(basename "$world" .toml)-$(sha256sum "$world" | cut -c1-8)
  if [ ! -f "$dir/_dataset.json" ]; then
    /usr/bin/time -f "simulate: %e s, peak RSS %M KiB" \
      "$bin" simulate --rows "$rows" --config "$world" --out "$dir" --overwrite --quiet >/dev/null
  fi
  echo "$dir"
}
