#!/usr/bin/env bash
# The GitHub Action's run step (action.yml), kept in a file so that it can be
# run and tested outside GitHub. Reads its inputs from the environment:
#   KMATRIX_PROJECT    the project folder (images/, scenarios/)        [.]
#   KMATRIX_SCENARIOS  scenario ids, space or newline separated        [all]
#   KMATRIX_KERNELS    kernel ids or image paths, likewise             [each scenario's]
#   KMATRIX_BASELINE   the run to compare with, relative to the project [results/baseline]
#   KMATRIX_FAIL_ON    regressions | findings | infra | none           [regressions]
#   KMATRIX_BIN        the kmatrix binary [$RUNNER_TEMP/kmatrix/bin/kmatrix, else kmatrix]
# Writes run-dir= and exit-code= to $GITHUB_OUTPUT and the Markdown diff
# against the baseline (cells both runs hold) to $GITHUB_STEP_SUMMARY; a
# run that fails its gate still exits 0 here, so that the report is uploaded
# before the action's last step fails the job with kmatrix's exit code.
set -uo pipefail

project=${KMATRIX_PROJECT:-.}
fail_on=${KMATRIX_FAIL_ON:-regressions}
baseline=${KMATRIX_BASELINE:-results/baseline}
bin=${KMATRIX_BIN:-${RUNNER_TEMP:+$RUNNER_TEMP/kmatrix/bin/kmatrix}}
bin=${bin:-kmatrix}
out="${RUNNER_TEMP:-$(mktemp -d)}/kmatrix-run"
summary=${GITHUB_STEP_SUMMARY:-/dev/stdout}
outputs=${GITHUB_OUTPUT:-/dev/null}

args=(--root "$project" run --out "$out")
for scenario in ${KMATRIX_SCENARIOS:-}; do args+=(--scenario "$scenario"); done
for kernel in ${KMATRIX_KERNELS:-}; do args+=(--kernel "$kernel"); done
case $fail_on in
  none) ;;
  regressions) args+=(--fail-on regressions --baseline "$project/$baseline") ;;
  findings | infra) args+=(--fail-on "$fail_on") ;;
  *)
    echo "::error::fail-on: \`$fail_on\` is none of regressions, findings, infra, none"
    echo "exit-code=2" >>"$outputs"
    exit 0
    ;;
esac

"$bin" "${args[@]}"
code=$?
echo "run-dir=$out" >>"$outputs"
echo "exit-code=$code" >>"$outputs"

{
  echo "## kmatrix"
  echo
  if [ -f "$out/matrix.md" ]; then
    cat "$out/matrix.md"
    echo
  fi
  if [ -d "$project/$baseline" ] && [ -f "$out/cells.jsonl" ]; then
    echo "### Against \`$baseline\` (the cells both runs hold)"
    echo
    "$bin" --root "$project" diff --common --format markdown "$project/$baseline" "$out"
  fi
} >>"$summary"
exit 0
