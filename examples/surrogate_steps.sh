# Steps shared by the surrogate recipes (examples/train_surrogate.sh, train_surrogate_500.sh); sourced, with
# $out the run folder. Run from the repository root.

# sample NAME ARGS...: deepks-es sample ARGS into $out/NAME.xyz, unless it is there
sample() { [ -s "$out/$1.xyz" ] || deepks-es sample -o "$out/$1.xyz" "${@:2}"; }

# train_committee CONFIG [MEMBERS]: the members (default 3: the config's `members`) side by side, one thread each
# (a member that fails stops the recipe), then the run that finds every member done and writes the model file
train_committee() {
  local pids=() pid k
  for k in $(seq 0 $((${2:-3} - 1))); do OMP_NUM_THREADS=1 deepks-es train "$1" --member "$k" & pids+=("$!"); done
  for pid in "${pids[@]}"; do wait "$pid"; done
  deepks-es train "$1"
}
