#!/usr/bin/env python3
"""Golden outputs from OpenCV, an independent implementation of the YuNet + SFace pipeline.

For every photo in tests/fixtures/photos.tsv this writes tests/fixtures/golden/<stem>.json with the
faces OpenCV's cv2.FaceDetectorYN finds (box, score, five landmarks) and, for each face, the
aligned 112x112 crop from cv2.FaceRecognizerSF.alignCrop (saved as <stem>.face<i>.png, lossless)
and the SFace embedding of that crop from FaceRecognizerSF.feature. tests/vision.rs compares
redeye's detector, alignment and embedder against these files.

Letterbox: FaceDetectorYN would normally run at the photo's own size (padded to a multiple of 32),
while redeye letterboxes every frame to 640x640. To compare like with like, this script letterboxes
exactly as src/vision/letterbox.rs does, and runs FaceDetectorYN at 640x640:
  s = 640 / max(w, h); resize to (round(w*s), round(h*s)) (round half up) with cv2.INTER_AREA when
  shrinking and cv2.INTER_LINEAR when enlarging; pad right and bottom with 0; then divide the x
  coordinates by new_w / w and the y coordinates by new_h / h.
Boxes are stored as OpenCV returns them (not clipped to the image); the test clips them.

Usage (from the repository root, with opencv-python-headless >= 4.8 and numpy):
  scripts/setup.sh opencv            # creates .cache/venv-opencv
  .cache/venv-opencv/bin/python scripts/opencv_golden.py
Options: --photos DIR (.cache/photos), --manifest FILE (tests/fixtures/photos.tsv),
         --models DIR (models), --out DIR (tests/fixtures/golden).
"""

import argparse
import hashlib
import json
import math
import os
import re
import sys

import cv2
import numpy as np

SIZE = 640
SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
TOP_K = 5000
DETECTOR = "face_detection_yunet_2023mar.onnx"
RECOGNIZER = "face_recognition_sface_2021dec_fp32.onnx"


def read_manifest(path):
    """Rows of (file, sha256, package, path_in_archive, person); '#' comments and a header skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if cols[0] == "file":
                continue
            if len(cols) < 5:
                sys.exit(f"{path}: expected 5 tab-separated columns, got {cols!r}")
            rows.append(cols[:5])
    return rows


def letterbox(img):
    """Resize + pad exactly as src/vision/letterbox.rs; returns (padded, new_w, new_h)."""
    h, w = img.shape[:2]
    s = SIZE / max(w, h)
    # Rust's f64::round rounds halves away from zero; Python's round() would round to even.
    nw = min(SIZE, max(1, int(math.floor(w * s + 0.5))))
    nh = min(SIZE, max(1, int(math.floor(h * s + 0.5))))
    interp = cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR
    resized = cv2.resize(img, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else img
    padded = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    padded[:nh, :nw] = resized
    return padded, nw, nh


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=".cache/photos")
    ap.add_argument("--manifest", default="tests/fixtures/photos.tsv")
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="tests/fixtures/golden")
    args = ap.parse_args()

    detector = cv2.FaceDetectorYN.create(
        os.path.join(args.models, DETECTOR), "", (SIZE, SIZE), SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K
    )
    recognizer = cv2.FaceRecognizerSF.create(os.path.join(args.models, RECOGNIZER), "")
    os.makedirs(args.out, exist_ok=True)

    for file, sha, package, archive_path, person in read_manifest(args.manifest):
        path = os.path.join(args.photos, file)
        data = open(path, "rb").read()
        if hashlib.sha256(data).hexdigest() != sha:
            sys.exit(f"{path}: sha256 differs from the manifest; run scripts/setup.sh")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # BGR
        if img is None:
            sys.exit(f"{path}: OpenCV cannot decode it")
        h, w = img.shape[:2]
        padded, nw, nh = letterbox(img)
        detector.setInputSize((SIZE, SIZE))
        _, faces = detector.detect(padded)
        faces = np.zeros((0, 15), np.float32) if faces is None else faces
        sx, sy = nw / w, nh / h
        stem = os.path.splitext(file)[0]
        out_faces = []
        for i, f in enumerate(faces):
            f = f.astype(np.float64).copy()
            f[[0, 2, 4, 6, 8, 10, 12]] /= sx
            f[[1, 3, 5, 7, 9, 11, 13]] /= sy
            face = f.astype(np.float32)
            crop = recognizer.alignCrop(img, face)
            feature = recognizer.feature(crop).flatten()
            crop_name = f"{stem}.face{i}.png"
            cv2.imwrite(os.path.join(args.out, crop_name), crop)
            out_faces.append(
                {
                    "bbox": [round(float(v), 4) for v in face[0:4]],
                    "score": round(float(face[14]), 6),
                    "landmarks": [[round(float(face[4 + 2 * k]), 4), round(float(face[5 + 2 * k]), 4)] for k in range(5)],
                    "crop": crop_name,
                    "crop_rgb_md5": hashlib.md5(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).tobytes()).hexdigest(),
                    "embedding": [round(float(v), 7) for v in feature],
                }
            )
        doc = {
            "photo": file,
            "sha256": sha,
            "person": person,
            "source": f"{package}:{archive_path}",
            "opencv_version": cv2.__version__,
            "width": w,
            "height": h,
            "letterbox": {"size": SIZE, "scaled": [nw, nh]},
            "detector": {"model": DETECTOR, "score_threshold": SCORE_THRESHOLD, "nms_threshold": NMS_THRESHOLD, "top_k": TOP_K},
            "recognizer": {"model": RECOGNIZER, "embedding": "raw FaceRecognizerSF.feature output, not normalised"},
            "faces": out_faces,
        }
        text = json.dumps(doc, indent=1)
        # Keep arrays of numbers (boxes, points, embeddings) on one line each.
        text = re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
        with open(os.path.join(args.out, stem + ".json"), "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        print(f"{file}: {len(out_faces)} face(s)")


if __name__ == "__main__":
    main()
