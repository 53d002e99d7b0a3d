#!/usr/bin/env python3
"""The OpenCV peer of `redeye bench pipeline`: N live RTSP cameras through a plain OpenCV pipeline.

`redeye bench pipeline` runs this with .cache/venv-opencv/bin/python (see `make setup-opencv`) once
per step and parses the one JSON object it prints on stdout. What a Python developer would write
with OpenCV alone, with no tracking:

  per camera  cv2.VideoCapture(url, CAP_FFMPEG) over RTSP/TCP (ffmpeg decoding with one thread, as
              redeye's decoder), reading every frame (grab(): it must, to keep up with the live
              stream); on every sampled frame (fps of the 25 the clips have, spread evenly, as
              redeye's sampling) retrieve() to BGR, FaceDetectorYN at the frame's own size (what
              OpenCV users do; redeye letterboxes to 640x640, a third more pixels for 640x480), then
              for each face alignCrop, the quality gate of src/vision/quality.rs, FaceRecognizerSF
              feature and the cosine match against the gallery (Franck, embedded by this
              FaceRecognizerSF from the same photo redeye enrols) at SFace's 0.363 threshold.
  threads     cv2.setNumThreads(--threads) in every process, the part ONNX Runtime's intra-op
              threads play in redeye (both default to 1; redeye runs one detection thread per core
              beside, this one thread or process per camera).
  --mode      `threads` (one per camera, one process; OpenCV releases the GIL in grab, retrieve,
              detect and feature) or `processes` (one per camera, forked). Measured on the 2-core
              bench machine, 4 cameras at 5 fps, 12 s windows, twice each (load average 7-11 from
              other work): threads finished 179 and 192 sampled frames, processes 153 and 175, and
              threads take less memory (545 MiB against 561 MiB Pss), so threads is the default.

Real time: frame i of a camera should be captured at base + i/25 s, where base is the earliest
read time minus i/25 over the whole run (the frame that came soonest). A sampled frame is late when
its result is out more than 1 s after that; one late frame in the window fails the step, the
equivalent of redeye dropping a sampled frame as `replaced`.

Time-to-name per visit: a visit on a camera starts at the capture time of the first sampled frame
with a face after 2 s without one (redeye's tracker `max_age_ms`); each identity (Franck, or
unknown) named in the visit for the first time gives one time-to-name: when its frame's result is
out minus the visit's first capture time. Visits named inside the window are reported.

CPU is utime + stime of every process of the pipeline over the window (/proc/<pid>/stat); memory
is the sum of Pss of those processes at the end of the window (pages shared after fork counted
once), and the sum of their VmHWM.

Usage: opencv_pipeline.py --fps F --threads T --mode M --warmup W --seconds S --models DIR --photo P URL...
"""

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
# RTSP over TCP as redeye's default transport; one decoding thread per camera.
os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp|threads;1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402

CLIP_FPS = 25.0
DETECTOR = "face_detection_yunet_2023mar.onnx"
RECOGNIZER = "face_recognition_sface_2021dec_fp32.onnx"
# src/vision/detect.rs, src/vision/quality.rs and the recognizer's defaults in cameras.toml.
SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K = 0.6, 0.3, 5000
MIN_FACE, MIN_SCORE, MIN_SHARPNESS = 32.0, 0.65, 25.0
MATCH_THRESHOLD = 0.363
MAX_AGE_S = 2.0
LATE_S = 1.0


def passes_gate(face, crop):
    if min(face[2], face[3]) < MIN_FACE or face[14] < MIN_SCORE:
        return False
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_64F, ksize=1)[1:-1, 1:-1]
    return lap.var() >= MIN_SHARPNESS


class Models:
    def __init__(self, models, photo):
        self.detector = cv2.FaceDetectorYN.create(
            os.path.join(models, DETECTOR), "", (320, 320), SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K
        )
        self.recognizer = cv2.FaceRecognizerSF.create(os.path.join(models, RECOGNIZER), "")
        self.size = None
        img = cv2.imread(photo, cv2.IMREAD_COLOR)
        faces = self.detect(img)
        if len(faces) != 1:
            raise SystemExit(f"{photo}: expected one face, found {len(faces)}")
        self.gallery = self.embed(img, faces[0])

    def detect(self, img):
        h, w = img.shape[:2]
        if self.size != (w, h):
            self.detector.setInputSize((w, h))
            self.size = (w, h)
        _, faces = self.detector.detect(img)
        return [] if faces is None else list(faces)

    def embed(self, img, face):
        crop = self.recognizer.alignCrop(img, face)
        return self.recognizer.feature(crop).copy(), crop

    def analyse(self, img):
        """Whether the frame has a face, the labels of those recognised ("franck" or "unknown"),
        and how many faces were embedded."""
        labels, embedded = set(), 0
        faces = self.detect(img)
        for face in faces:
            crop = self.recognizer.alignCrop(img, face)
            if not passes_gate(face, crop):
                continue
            feature = self.recognizer.feature(crop)
            embedded += 1
            score = self.recognizer.match(feature, self.gallery[0], cv2.FaceRecognizerSF_FR_COSINE)
            labels.add("franck" if score >= MATCH_THRESHOLD else "unknown")
        return bool(faces), labels, embedded


def camera(url, fps, models_dir, photo, threads, stop, connected):
    """One camera until `stop`: returns its records (see the module docstring)."""
    cv2.setNumThreads(threads)
    models = Models(models_dir, photo)
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    base = None
    i = 0
    sampled = []  # (frame index, done time, faces embedded)
    names = []  # (done time, frame index of the visit's first face)
    visit_i, last_face_i, named = None, None, set()
    disconnected = False
    while not stop.is_set():
        if not cap.grab():
            disconnected = True
            break
        now = time.time()
        if base is None:
            connected.put(1)
        b = now - i / CLIP_FPS
        base = b if base is None else min(base, b)
        # Frame i is sampled when it crosses a multiple of 1/fps: evenly spread, fps on average.
        if i == 0 or int(i * fps / CLIP_FPS) != int((i - 1) * fps / CLIP_FPS):
            ok, frame = cap.retrieve()
            if ok:
                found, labels, embedded = models.analyse(frame)
                done = time.time()
                if found:
                    if last_face_i is None or (i - last_face_i) / CLIP_FPS > MAX_AGE_S:
                        visit_i, named = i, set()
                    last_face_i = i
                    for label in labels - named:
                        named.add(label)
                        names.append((done, visit_i))
                sampled.append((i, done, embedded))
        i += 1
    cap.release()
    return {"base": base, "sampled": sampled, "names": names, "disconnected": disconnected}


def proc_stat(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def proc_mem(pid):
    """(Pss, VmHWM) in KiB: Pss shares the pages forked processes have in common among them, so
    that the sum over processes is the memory they really take (RSS would count them N times)."""
    pss = hwm = 0
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return pss, hwm


def camera_process(url, fps, models_dir, photo, threads, stop, connected, results):
    results.put(camera(url, fps, models_dir, photo, threads, stop, connected))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fps", type=float, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=["threads", "processes"], default="threads")
    ap.add_argument("--warmup", type=float, default=6.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--models", default="models")
    ap.add_argument("--photo", required=True)
    ap.add_argument("urls", nargs="+")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)

    if args.mode == "processes":
        ctx = mp.get_context("fork")
        stop, connected, results = ctx.Event(), ctx.Queue(), ctx.Queue()
        procs = [
            ctx.Process(
                target=camera_process,
                args=(u, args.fps, args.models, args.photo, args.threads, stop, connected, results),
            )
            for u in args.urls
        ]
        for p in procs:
            p.start()
        # The parent (idle, waiting) counts too: it is part of the pipeline.
        pids = [os.getpid()] + [p.pid for p in procs]
    else:
        import queue

        stop, connected = threading.Event(), queue.Queue()
        out = [None] * len(args.urls)

        def run(k, u):
            out[k] = camera(u, args.fps, args.models, args.photo, args.threads, stop, connected)

        procs = [threading.Thread(target=run, args=(k, u)) for k, u in enumerate(args.urls)]
        for t in procs:
            t.start()
        pids = [os.getpid()]

    deadline = time.time() + 60
    for _ in args.urls:
        connected.get(timeout=max(1.0, deadline - time.time()))
    time.sleep(args.warmup)
    t0, cpu0 = time.time(), sum(proc_stat(p) for p in pids)
    time.sleep(args.seconds)
    t1, cpu1 = time.time(), sum(proc_stat(p) for p in pids)
    mem = [proc_mem(p) for p in pids]
    stop.set()
    if args.mode == "processes":
        cams = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=10)
    else:
        for t in procs:
            t.join(timeout=60)
        cams = out

    sampled = embedded = late = disconnected = 0
    max_lag = 0.0
    ttn = []
    for cam in cams:
        base = cam["base"]
        disconnected += cam["disconnected"]
        for i, done, emb in cam["sampled"]:
            if not t0 <= done <= t1:
                continue
            lag = done - (base + i / CLIP_FPS)
            sampled += 1
            embedded += emb
            max_lag = max(max_lag, lag)
            late += lag > LATE_S
        for done, first_i in cam["names"]:
            if t0 <= done <= t1:
                ttn.append(round((done - (base + first_i / CLIP_FPS)) * 1000))
    report = {
        "mode": args.mode,
        "cameras": len(args.urls),
        "opencv_version": cv2.__version__,
        "wall_s": t1 - t0,
        "cpu_s": (cpu1 - cpu0) / os.sysconf("SC_CLK_TCK"),
        "rss_kib": sum(m[0] for m in mem),
        "hwm_kib": sum(m[1] for m in mem),
        "sampled": sampled,
        "embedded": embedded,
        "late": late,
        "max_lag_ms": round(max_lag * 1000),
        "disconnected": disconnected,
        "ttn_ms": ttn,
    }
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
