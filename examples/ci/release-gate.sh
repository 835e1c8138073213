#!/usr/bin/env bash
# A CI step that blocks a release on prunectl's privacy gate (any CI system: GitLab, Jenkins, ...).
#
#   examples/ci/release-gate.sh [CONFIG] [RUN_DIR]      # defaults: prunectl.toml, runs/release
#
# It runs `prunectl compress`, publishes the gate's JUnit and Markdown reports whatever the
# verdict (a failure's evidence matters most), and on a pass runs `prunectl verify` (every hash
# recomputed; the ONNX must be the model the gate audited). It exits with compress's own code:
#   0 passed and verified: RUN_DIR/export/model.onnx is the release artifact
#   1 the gate failed or could not establish the leak is under the threshold (no artifact),
#     or the artifact did not verify
#   2 bad input (the message names it)      3 a bug in prunectl      130 interrupted
#   143 terminated (SIGTERM, e.g. a cancelled job): rerun with --resume in place of --overwrite
#
# Environment: PRUNECTL (the executable, default `prunectl`), REPORTS_DIR (where the reports
# are copied, default RUN_DIR/../reports), GITHUB_STEP_SUMMARY (set by GitHub Actions: the
# Markdown summary is appended to it), and any PRUNECTL_* recipe variable, e.g.
# PRUNECTL_GATE_STRICT=true to gate on the upper end of the 95% interval.
set -uo pipefail

config="${1:-prunectl.toml}"
run_dir="${2:-runs/release}"
prunectl="${PRUNECTL:-prunectl}"
reports="${REPORTS_DIR:-$(dirname "$run_dir")/reports}"

arguments=(compress --out "$run_dir" --overwrite)
if [ -f "$config" ]; then
  arguments+=(--config "$config")
else
  echo "release-gate: no $config here; using the built-in defaults and PRUNECTL_* variables" >&2
fi

"$prunectl" "${arguments[@]}"
status=$?
if [ "$status" = 0 ]; then
  "$prunectl" verify "$run_dir" || status=1
fi

if [ -f "$run_dir/gate/summary.md" ]; then
  mkdir -p "$reports"
  cp "$run_dir/gate/junit.xml" "$run_dir/gate/summary.md" "$reports/"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$run_dir/gate/summary.md" >> "$GITHUB_STEP_SUMMARY"
  fi
  echo "release-gate: reports in $reports (junit.xml, summary.md)" >&2
fi

case "$status" in
  0) echo "release-gate: PASSED; ship $run_dir/export/model.onnx.xz (hashes in $run_dir/manifest.json)" >&2 ;;
  1) echo "release-gate: BLOCKED by the privacy gate (or the artifact did not verify); see $run_dir/gate/summary.md" >&2 ;;
  *) echo "release-gate: prunectl exited $status; see its message above" >&2 ;;
esac
exit "$status"
