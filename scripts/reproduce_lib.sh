# Shared by scripts/reproduce_*.sh (sourced, not run). Expects SEEDS, MT and the COMMON override array.

# Run one multirun stage for the seeds of SEEDS that have no finished run (summary.json) of METHOD in DIR yet,
# so that a reproduce script resumes after an interruption and adding seeds trains only the new ones.
#   stage DIR MODEL METHOD OVERRIDES...
stage() {
  local dir=$1 model=$2 method=$3; shift 3
  local todo=() s tag="[${0##*/}]"
  for s in ${SEEDS//,/ }; do
    compgen -G "$dir/*_${model}_${method}_s${s}/summary.json" >/dev/null || todo+=("$s")
  done
  if [ ${#todo[@]} -eq 0 ]; then echo "$tag $dir: $method done for seeds $SEEDS"; return; fi
  local seeds; seeds=$(IFS=,; echo "${todo[*]}")
  echo "$tag $dir: $method, seeds $seeds"
  "$MT" train -m "$@" method="$method" seed="$seeds" "${COMMON[@]}" "hydra.sweep.dir=$dir"
}
