# Shared by scripts/reproduce_*.sh (sourced, not run). Expects SEEDS, MT and the COMMON override array.
#
# A stage is one method on every seed of SEEDS, in a multirun folder whose job folders are named
# <job number>_<model>_<method>_s<seed> (conf/train.yaml's hydra.sweep.subdir). Rerunning a script with the
# same folders continues where it stopped: a seed with a finished run (summary.json) is skipped, an unfinished
# run (checkpoints/last.pt, no summary.json) is resumed in its own folder, and only the seeds with no run to
# continue (none, or one killed before its first checkpoint) are trained afresh, in one multirun. Job numbers
# are not stable across attempts (a multirun numbers its own jobs from 0), so runs are found by their name.

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

# stage DIR MODEL METHOD OVERRIDES...: METHOD on the seeds of SEEDS that have no finished run in DIR yet; the
# unfinished runs resumed one by one (resume=true hydra.run.dir=<their folder>, the same overrides), then one
# multirun of the seeds without a run to continue.
stage() {
  local dir=$1 model=$2 method=$3; shift 3
  local todo=() s run tag="[${0##*/}]"
  for s in ${SEEDS//,/ }; do
    run=$(seed_run "$dir" "${model}_${method}_s${s}")
    if [ "$run" = done ]; then continue; fi
    if [ -n "$run" ]; then
      echo "$tag $run: resuming $method seed $s"
      run_mt train "$@" method="$method" seed="$s" "${COMMON[@]}" resume=true "hydra.run.dir=$run"
    else
      todo+=("$s")
    fi
  done
  if [ ${#todo[@]} -eq 0 ]; then echo "$tag $dir: $method done for seeds $SEEDS"; return; fi
  local seeds; seeds=$(IFS=,; echo "${todo[*]}")
  echo "$tag $dir: $method, seeds $seeds"
  run_mt train -m "$@" method="$method" seed="$seeds" "${COMMON[@]}" "hydra.sweep.dir=$dir"
}
