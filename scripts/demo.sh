#!/usr/bin/env bash
# `make demo`: redeye on an embedded default, start to finish.
#
# Starts its own redis-server on a free port (unless REDEYE_REDIS_URL is set), makes two camera
# clips from the registry photos, serves them over RTSP with GStreamer (or as file:// sources if
# the RTSP server cannot start), enrols four people, runs `redeye run`, and prints readable
# recognition events for DEMO_SECONDS (default 40). Everything it makes is in .cache/demo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO="$ROOT/.cache/demo"
PHOTOS="$ROOT/.cache/photos"
BIN="$ROOT/target/release/redeye"
RUN_FOR="${DEMO_SECONDS:-40}"
mkdir -p "$DEMO"

say() { printf '\033[1mdemo:\033[0m %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# 1. Redis.
if [ -n "${REDEYE_REDIS_URL:-}" ]; then
  REDIS_URL="$REDEYE_REDIS_URL"
  say "using Redis at $REDIS_URL"
else
  port="$(free_port)"
  mkdir -p "$DEMO/redis"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$DEMO/redis" \
    --logfile "$DEMO/redis/redis.log" &
  PIDS+=($!)
  REDIS_URL="redis://127.0.0.1:$port"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  say "started redis-server on $REDIS_URL"
fi
export REDEYE_REDIS_URL="$REDIS_URL"

# 2. Two clips: a slideshow of photos per camera, 25 fps, one key frame a second. Enrolled people
#    appear in photos other than their enrolment photo; Joe Biden and Audrey Hepburn are strangers.
make_clip() {
  local out="$1"; shift
  [ -f "$out" ] && return 0
  local inputs=() graph="" i=0
  for p in "$@"; do
    inputs+=(-loop 1 -framerate 25 -t 3 -i "$PHOTOS/$p")
    # Each person for 3 s, then 3 s of an empty scene: longer than [tracking] max_age_ms, so
    # every photo is a visit of its own (arrived, then left), as people passing a camera are.
    graph+="[$i:v]scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,tpad=stop_mode=add:stop_duration=3:color=black[v$i];"
    i=$((i + 1))
  done
  for j in $(seq 0 $((i - 1))); do graph+="[v$j]"; done
  graph+="concat=n=$i:v=1:a=0[out]"
  ffmpeg -hide_banner -loglevel error -y "${inputs[@]}" -filter_complex "$graph" -map '[out]' \
    -c:v libx264 -preset veryfast -g 25 -bf 0 -sc_threshold 0 -movflags +faststart "$out"
}
make_clip "$DEMO/entrance-visits.mp4" obama2.jpg cage2_crop.jpg biden.jpg franck_02888.jpg
make_clip "$DEMO/food-court-visits.mp4" sean_guru2_crop.jpg obama3.jpg audrey.jpg franck_04117.jpg

# 3. Cameras: RTSP through GStreamer when it works, file sources otherwise. Either way the clips
#    loop like live cameras (the server replays them without end; file sources loop), so a camera
#    that goes quiet in the demo is a fault, never the end of a clip.
rtsp_port="$(free_port)"
URL_ENTRANCE="file://$DEMO/entrance-visits.mp4"
URL_FOOD="file://$DEMO/food-court-visits.mp4"
if /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null; then
  /usr/bin/python3 "$ROOT/scripts/rtsp_server.py" --loop "$rtsp_port" \
    "entrance=$DEMO/entrance-visits.mp4" "food-court=$DEMO/food-court-visits.mp4" > "$DEMO/rtsp.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do grep -q ready "$DEMO/rtsp.log" 2>/dev/null && break; sleep 0.1; done
  if grep -q ready "$DEMO/rtsp.log"; then
    URL_ENTRANCE="rtsp://127.0.0.1:$rtsp_port/entrance"
    URL_FOOD="rtsp://127.0.0.1:$rtsp_port/food-court"
    say "RTSP server on port $rtsp_port"
  else
    say "the RTSP server did not start (see $DEMO/rtsp.log); playing the clips as files"
  fi
fi

# 4. The demo's cameras.toml: the shipped defaults, two groups of one camera each.
cat > "$DEMO/cameras.toml" <<EOF
[runtime]
onnxruntime = "$ROOT/third_party/onnxruntime/libonnxruntime.so"
[detector]
model = "$ROOT/models/face_detection_yunet_2023mar.onnx"
[recognizer]
model = "$ROOT/models/face_recognition_sface_2021dec_fp32.onnx"
[admin]
listen = "127.0.0.1:$(free_port)"

[[group]]
name = "entrance"
[[group.camera]]
name = "entrance-door"
url = "$URL_ENTRANCE"
fps = 2.0

[[group]]
name = "food-court"
[[group.camera]]
name = "food-court-east"
url = "$URL_FOOD"
fps = 2.0
EOF
CONFIG=(-c "$DEMO/cameras.toml")
"$BIN" "${CONFIG[@]}" check-config >/dev/null

# 5. The gallery.
say "enrolling four people from one photo each"
for person in "Barack Obama=obama.jpg" "Nicolas Cage=cage.jpg" "Franck=franck_01829.jpg" \
  "Sean Connery=SeanConnery.jpg"; do
  REDEYE_LOG=warn "$BIN" "${CONFIG[@]}" enroll --name "${person%%=*}" "$PHOTOS/${person#*=}"
done

# 6. Run ingest and workers, and watch the events.
REDEYE_LOG="${REDEYE_LOG:-warn}" "$BIN" "${CONFIG[@]}" run > "$DEMO/run.log" 2>&1 &
PIDS+=($!)
say "redeye run is up (log: $DEMO/run.log); visits (arrived, left) for ${RUN_FOR}s:"
timeout --foreground "$RUN_FOR" "$BIN" "${CONFIG[@]}" subscribe --format text || true
say "done"
