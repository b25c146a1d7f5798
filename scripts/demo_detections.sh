#!/usr/bin/env bash
# Make demo/detections/*.json again with the current face pipeline: the demo clips are registered and
# analysed in a throw-away data directory (nothing else is touched) and `detect_faces --export-dir`
# writes each clip's detections with its traces' face vectors (demo/detections/README.md).
#   scripts/demo_detections.sh              # writes demo/detections/
#   scripts/demo_detections.sh /tmp/out     # writes elsewhere (to compare)
source "$(dirname "$0")/_bootstrap.sh" requirements.txt
out="${1:-$ROOT/demo/detections}"
MOMENTRY_DATA_DIR="$(mktemp -d)"
export MOMENTRY_DATA_DIR
trap 'rm -rf "$MOMENTRY_DATA_DIR"' EXIT
python manage.py migrate --noinput -v0
uuids=()
for clip in demo/media/*.mp4; do
  uuids+=("$(python manage.py register_file "$clip" | tail -n 1)")
done
python manage.py detect_faces "${uuids[@]}" --export-dir "$out" -v0
