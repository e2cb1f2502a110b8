# Shared by scripts/reproduce_*.sh (sourced, not run). Expects SEEDS, MT and the COMMON override array; PY (python)
# when SEED_CSV is set.
#
# A stage is one method on every seed of SEEDS, in a multirun folder whose job folders are named
# <job number>_<model>_<method>_s<seed> (conf/train.yaml's hydra.sweep.subdir). Rerunning a script with the
# same folders continues where it stopped: a seed with a finished run (summary.json) is skipped, an unfinished
# run (checkpoints/last.pt, no summary.json) is resumed in its own folder, and only the seeds with no run to
# continue (none, or one killed before its first checkpoint) are trained afresh, in one multirun. Job numbers
# are not stable across attempts (a multirun numbers its own jobs from 0), so runs are found by their name.
#
# Per-seed CSV (docs/results_tooling.md): when SEED_CSV names the table's per-seed CSV (results/.../per_seed.csv),
# a seed whose (arm, seed) row is already there is not trained at all (the row survives a new machine), and once
# the stage's runs have finished each one not yet recorded is appended (scripts/record_run.py: one row per run).
# The arm is the method, or ARM for one call (ARM=tuned stage ...); DATA_NAME names the dataset in the rows.
# MISSING_RUNS becomes 1 when a recorded seed has no run on this machine (the per-step curves need the runs).
MISSING_RUNS=0

# run_mt ARGS...: "$MT" ARGS; an interrupt (exit status >= 128: SIGINT, SIGTERM) stops the calling script with
# that status and says how to go on; another failure is returned (the scripts run with set -e: they stop too).
run_mt() {
  local rc=0
  "$MT" "$@" || rc=$?
  if [ "$rc" -ge 128 ]; then
    echo "[${0##*/}] interrupted (exit status $rc): the runs so far are kept; run the script again to resume" >&2
    exit "$rc"
  fi
  return "$rc"
}

# seed_run DIR NAME: where the run NAME (<model>_<method>_s<seed>) stands in the multirun folder DIR; prints
# "done" (a job folder <n>_NAME has a summary.json), else the unfinished job folder to resume (the one with the
# newest checkpoints/last.pt), else nothing (no run to continue: train it afresh).
seed_run() {
  local dir=$1 name=$2 d best=""
  for d in "$dir"/*_"$name"; do
    [[ -d $d && ${d##*/} =~ ^[0-9]+_"$name"$ ]] || continue
    if [ -f "$d/summary.json" ]; then echo done; return; fi
    [ -f "$d/checkpoints/last.pt" ] || continue
    if [ -z "$best" ] || [ "$d/checkpoints/last.pt" -nt "$best/checkpoints/last.pt" ]; then best=$d; fi
  done
  if [ -n "$best" ]; then echo "$best"; fi
}

# finished_run DIR NAME: the job folder <n>_NAME of DIR with a summary.json (nothing when none)
finished_run() {
  local d
  for d in "$1"/*_"$2"; do
    if [[ -f $d/summary.json && ${d##*/} =~ ^[0-9]+_"$2"$ ]]; then echo "$d"; return; fi
  done
}

# recorded CSV ARM SEED: whether the per-seed CSV has the row (ARM, SEED) (its first two columns; an arm label
# has no comma or quote, scripts/record_run.py checks it)
recorded() {
  [ -f "$1" ] && awk -F, -v a="$2" -v s="$3" 'NR > 1 && $1 == a && $2 == s { found = 1; exit } END { exit !found }' "$1"
}

# record ARM RUN_DIR...: append the finished runs' rows to SEED_CSV (a row already there is skipped)
record() {
  local arm=$1; shift
  if [ -z "${SEED_CSV:-}" ] || [ $# -eq 0 ]; then return 0; fi
  "$PY" scripts/record_run.py "$SEED_CSV" "$@" --arm "$arm" ${DATA_NAME:+--data "$DATA_NAME"}
}

# restore_baseline FILE DIR [MAX_RESOURCE]: the published tuned weights FILE (results/.../hyperband_baseline.yaml)
# as DIR's <model>-<data>.yaml, where method.weights=baseline baselines_dir=DIR finds them: a new machine trains the
# tuned arm with the published weights instead of tuning again. With MAX_RESOURCE, a FILE whose budget's
# max_resource differs (weights tuned for an earlier protocol) is not restored: status 1, the caller tunes again
restore_baseline() {
  local m d r
  m=$(sed -n 's/^model: *//p' "$1" | head -n 1); d=$(sed -n 's/^data: *//p' "$1" | head -n 1)
  if [ -z "$m" ] || [ -z "$d" ]; then echo "error: $1: no model: or data: line" >&2; exit 2; fi
  if [ -n "${3:-}" ]; then  # weights tuned under another step budget (an earlier protocol) are not this baseline
    r=$(sed -n 's/^ *max_resource: *//p' "$1" | head -n 1)
    if [ "$r" != "$3" ]; then
      echo "[${0##*/}] $1: tuned with max_resource '${r:-none}', this protocol's is $3: tuning again" >&2
      return 1
    fi
  fi
  mkdir -p "$2" && cp "$1" "$2/$m-$d.yaml"
  echo "[${0##*/}] $2: the tuned weights of $1 (no tuning)"
}

# publish_baseline SRC DST: the tuned weights SRC (the tune run's baseline file) as the published DST, with the
# repository root cut from its paths (the study's journal, the final run) and DATA_ROOT written as given, not
# resolved: no absolute path in results/
publish_baseline() {
  local data=()
  if [ -n "${DATA_ROOT:-}" ] && [ -d "$DATA_ROOT" ]; then data=(-e "s#$(realpath "$DATA_ROOT")#$DATA_ROOT#g"); fi
  sed ${data[@]+"${data[@]}"} -e "s#$(pwd)/##g" "$1" > "$2.partial" && mv "$2.partial" "$2"
}

# stage DIR MODEL METHOD OVERRIDES...: METHOD on the seeds of SEEDS that have no finished run in DIR yet (and no
# row in SEED_CSV); the unfinished runs resumed one by one (resume=true hydra.run.dir=<their folder>, the same
# overrides), then one multirun of the seeds without a run to continue; then the rows of the finished runs.
stage() {
  local dir=$1 model=$2 method=$3; shift 3
  local arm=${ARM:-$method} todo=() done_runs=() s run tag="[${0##*/}]"
  for s in ${SEEDS//,/ }; do
    if [ -n "${SEED_CSV:-}" ] && recorded "$SEED_CSV" "$arm" "$s"; then
      if [ -z "$(finished_run "$dir" "${model}_${method}_s${s}")" ]; then MISSING_RUNS=1; fi
      continue
    fi
    run=$(seed_run "$dir" "${model}_${method}_s${s}")
    if [ "$run" = done ]; then continue; fi
    if [ -n "$run" ]; then
      echo "$tag $run: resuming $method seed $s"
      run_mt train "$@" method="$method" seed="$s" "${COMMON[@]}" resume=true "hydra.run.dir=$run"
    else
      todo+=("$s")
    fi
  done
  if [ ${#todo[@]} -eq 0 ]; then
    echo "$tag $dir: $method done for seeds $SEEDS"
  else
    local seeds; seeds=$(IFS=,; echo "${todo[*]}")
    echo "$tag $dir: $method, seeds $seeds"
    run_mt train -m "$@" method="$method" seed="$seeds" "${COMMON[@]}" "hydra.sweep.dir=$dir"
  fi
  if [ -n "${SEED_CSV:-}" ]; then
    for s in ${SEEDS//,/ }; do
      if ! recorded "$SEED_CSV" "$arm" "$s"; then
        run=$(finished_run "$dir" "${model}_${method}_s${s}")
        if [ -n "$run" ]; then done_runs+=("$run"); fi
      fi
    done
    record "$arm" ${done_runs[@]+"${done_runs[@]}"}
  fi
}
