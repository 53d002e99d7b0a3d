#!/usr/bin/env python3
"""OpenCV's side of `redeye bench vision`: the same photos through OpenCV's own YuNet + SFace pipeline.

`redeye bench vision` runs this with .cache/venv-opencv/bin/python (see `make setup-opencv`) once per
thread count and parses the one JSON object it prints on stdout. It measures exactly what the Rust side
measures, with the same protocol, so that the ratios in the table compare like with like:

  detect_frame  cv2.FaceDetectorYN.detect on a photo already letterboxed to 640x640 (u8 -> f32 blob,
                inference, decode, NMS); one frame per call
  detect_photo  letterbox (cv2.resize + pad, as src/vision/letterbox.rs) + FaceDetectorYN.detect on each
                photo; one frame per call
  embed_sface   FaceRecognizerSF.feature on one aligned 112x112 crop (SFace's batch is fixed at 1)
  e2e           per photo: letterbox, detect, then for every face alignCrop, the quality gate of
                src/vision/quality.rs (size, score, Laplacian variance) and feature for those that pass;
                items = faces embedded

Protocol (the same as src/cmd/bench.rs): photos are decoded into memory first (decoding is not
timed); each op is warmed up for at least 3 calls and min(0.5 s, budget/4), then runs whole passes over
its inputs until `--seconds` have elapsed (at least one pass). Every call is timed with
time.perf_counter(); a sample is [milliseconds, items].

Same model files as redeye; cv2.setNumThreads(--threads) plays the part of ONNX Runtime's intra-op threads.

Usage: opencv_bench.py --threads N --seconds S [--models DIR] PHOTO...
"""

import argparse
import json
import math
import os
import sys
import time

# OpenCV 5 warns on stderr that its new graph engine ignores setPreferableTarget; not our concern.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

SIZE = 640
DETECTOR = "face_detection_yunet_2023mar.onnx"
RECOGNIZER = "face_recognition_sface_2021dec_fp32.onnx"
# src/vision/detect.rs and src/vision/quality.rs defaults.
SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K = 0.6, 0.3, 5000
MIN_FACE, MIN_SCORE, MIN_SHARPNESS = 32.0, 0.65, 25.0


def letterbox(img):
    """Resize + pad exactly as src/vision/letterbox.rs; returns (padded, sx, sy)."""
    h, w = img.shape[:2]
    s = SIZE / max(w, h)
    nw = min(SIZE, max(1, int(math.floor(w * s + 0.5))))  # Rust rounds halves away from zero
    nh = min(SIZE, max(1, int(math.floor(h * s + 0.5))))
    interp = cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR
    resized = cv2.resize(img, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else img
    padded = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    padded[:nh, :nw] = resized
    return padded, nw / w, nh / h


def passes_gate(face, crop):
    """src/vision/quality.rs: min(w, h) of the clipped box, score, Laplacian variance of the grey crop."""
    if min(face[2], face[3]) < MIN_FACE or face[14] < MIN_SCORE:
        return False
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_64F, ksize=1)[1:-1, 1:-1]
    return lap.var() >= MIN_SHARPNESS


def peak_rss_kib():
    """VmHWM of this process (Python and numpy included), as the Rust side reads it. Not
    getrusage's ru_maxrss: after fork + exec that still counts the parent's pages (the Rust bench
    at its peak)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def measure(inputs, seconds, op):
    """Warm up, then whole passes over `inputs` until `seconds` elapsed; returns [[ms, items], ...]."""
    warm_until = time.perf_counter() + min(0.5, seconds / 4)
    i = 0
    while i < 3 or time.perf_counter() < warm_until:
        op(inputs[i % len(inputs)])
        i += 1
    samples, start = [], time.perf_counter()
    while not samples or time.perf_counter() - start < seconds:
        for x in inputs:
            t0 = time.perf_counter()
            items = op(x)
            samples.append([(time.perf_counter() - t0) * 1e3, items])
    return samples


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--models", default="models")
    ap.add_argument("photos", nargs="+")
    args = ap.parse_args()

    cv2.setNumThreads(args.threads)
    detector = cv2.FaceDetectorYN.create(
        os.path.join(args.models, DETECTOR), "", (SIZE, SIZE), SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K
    )
    recognizer = cv2.FaceRecognizerSF.create(os.path.join(args.models, RECOGNIZER), "")

    images = []
    for p in args.photos:
        img = cv2.imread(p, cv2.IMREAD_COLOR)  # BGR
        if img is None:
            sys.exit(f"{p}: OpenCV cannot decode it")
        images.append(img)
    frames = [letterbox(img) for img in images]

    def detect_frame(frame):
        detector.detect(frame[0])
        return 1

    def detect_photo(img):
        padded, _, _ = letterbox(img)
        detector.detect(padded)
        return 1

    def faces_of(img):
        """Detections in the photo's coordinates, boxes clipped as redeye clips them."""
        padded, sx, sy = letterbox(img)
        _, faces = detector.detect(padded)
        if faces is None:
            return []
        faces = faces.copy()
        faces[:, 0:14:2] /= sx
        faces[:, 1:14:2] /= sy
        h, w = img.shape[:2]
        x1, y1 = np.clip(faces[:, 0], 0, w), np.clip(faces[:, 1], 0, h)
        x2, y2 = np.clip(faces[:, 0] + faces[:, 2], 0, w), np.clip(faces[:, 1] + faces[:, 3], 0, h)
        faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 3] = x1, y1, x2 - x1, y2 - y1
        return [f for f in faces if f[2] * f[3] > 0]

    def end_to_end(img):
        embedded = 0
        for face in faces_of(img):
            crop = recognizer.alignCrop(img, face)
            if passes_gate(face, crop):
                recognizer.feature(crop)
                embedded += 1
        return embedded

    # The crops SFace is timed on: this pipeline's own aligned, gate-passing faces.
    crops = []
    for img in images:
        for face in faces_of(img):
            crop = recognizer.alignCrop(img, face)
            if passes_gate(face, crop):
                crops.append(crop)
    if not crops:
        sys.exit("no faces found in the photos")

    def embed(crop):
        recognizer.feature(crop)
        return 1

    ops = {
        "detect_frame": measure(frames, args.seconds, detect_frame),
        "detect_photo": measure(images, args.seconds, detect_photo),
        "embed_sface": measure(crops, args.seconds, embed),
        "e2e": measure(images, args.seconds, end_to_end),
    }
    out = {
        "opencv_version": cv2.__version__,
        "threads": args.threads,
        "photos": len(images),
        "faces_per_pass": sum(end_to_end(img) for img in images),
        "peak_rss_kib": peak_rss_kib(),
        "ops": ops,
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
