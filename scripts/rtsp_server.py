#!/usr/bin/python3
"""A real RTSP server for redeye's tests: GStreamer's gst-rtsp-server through GObject introspection.

    /usr/bin/python3 scripts/rtsp_server.py PORT MOUNT=FILE [MOUNT=FILE ...]

Serves each mp4 FILE at rtsp://127.0.0.1:PORT/MOUNT without re-encoding (demux, parse, RTP
payload), over TCP (interleaved) or UDP, as the client asks. Each client gets its own pipeline (`set_shared(False)`),
so every session starts at the file's first key frame. H.265 is used when the file name contains
`h265` or `hevc`, H.264 otherwise. Prints `ready` on stdout once the port is listening, then runs
until killed; exits with status 3 if the port cannot be bound.

Needs Debian's python3 (`/usr/bin/python3`) with python3-gi, gir1.2-gst-rtsp-server-1.0 and the
GStreamer base/good/bad plugins: `make setup` installs them.
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


# Exit status when the port cannot be bound (yet), distinct from Python's 1 for an exception, so
# that the test harness retries only this.
EXIT_CANNOT_LISTEN = 3


def launch_line(path: str) -> str:
    name = os.path.basename(path).lower()
    codec = "h265" if ("h265" in name or "hevc" in name) else "h264"
    # config-interval=-1: SPS/PPS (and VPS) in-band before every key frame, as cameras do, on top
    # of sprop-parameter-sets in the SDP.
    return (
        f'( filesrc location="{path}" ! qtdemux ! {codec}parse ! '
        f"rtp{codec}pay name=pay0 pt=96 config-interval=-1 )"
    )


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    port = sys.argv[1]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    mounts = server.get_mount_points()
    for arg in sys.argv[2:]:
        mount, sep, path = arg.partition("=")
        if not sep or not mount or not path:
            print(f"bad argument {arg!r}: expected MOUNT=FILE", file=sys.stderr)
            return 2
        if not os.path.isfile(path):
            print(f"no such file: {path}", file=sys.stderr)
            return 2
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(os.path.abspath(path)))
        factory.set_shared(False)
        mounts.add_factory("/" + mount.strip("/"), factory)
        print(f"mount /{mount.strip('/')} -> {path}", file=sys.stderr)
    # attach() binds and listens; it returns 0 when the port cannot be bound.
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
