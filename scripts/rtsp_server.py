#!/usr/bin/python3
"""A real RTSP server for redeye's tests, demo and benchmarks: GStreamer's gst-rtsp-server through
GObject introspection.

    /usr/bin/python3 scripts/rtsp_server.py [--loop | --freeze-after SECONDS] PORT MOUNT=FILE[@START] ...

Serves each mp4 FILE at rtsp://127.0.0.1:PORT/MOUNT without re-encoding (demux, parse, RTP
payload), over TCP (interleaved) or UDP, as the client asks, in real time. Each client gets its own
pipeline (`set_shared(False)`), so every session starts at the file's first key frame. H.265 is
used when the file name contains `h265` or `hevc`, H.264 otherwise.

Without `--loop` a clip plays once and the session then stays open with no more video, as a camera
that froze does: what the stall tests need. With `--loop` a clip plays without end, as a live camera
does: the clip's access units are read once into memory and pushed again and again through an
`appsrc`, each pass shifted by the clip's length, so timestamps (and the RTP clock) run on without a
jump and B-frames keep their order; `MOUNT=FILE@START` starts every pass of that mount at the key
frame at or after START seconds of the clip (the benchmark's cameras see the same clip out of
step, as people do not walk in front of every camera at once). With `--freeze-after SECONDS` the clip loops the same way but
stops after SECONDS of video without ending the stream: RTCP goes on, video does not, as from a
camera whose encoder hung (a server that ends a clip may or may not send an RTCP BYE first; this
never does).

Prints `ready` on stdout once the port is listening, then runs until killed; exits with status 3
if the port cannot be bound.

Needs Debian's python3 (`/usr/bin/python3`) with python3-gi, gir1.2-gst-rtsp-server-1.0 and the
GStreamer base/good/bad plugins: `make setup` installs them.
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402,F401


# Exit status when the port cannot be bound (yet), distinct from Python's 1 for an exception, so
# that the test harness retries only this.
EXIT_CANNOT_LISTEN = 3


def codec_of(path: str) -> str:
    name = os.path.basename(path).lower()
    return "h265" if ("h265" in name or "hevc" in name) else "h264"


def launch_line(path: str) -> str:
    codec = codec_of(path)
    # config-interval=-1: SPS/PPS (and VPS) in-band before every key frame, as cameras do, on top
    # of sprop-parameter-sets in the SDP.
    return (
        f'( filesrc location="{path}" ! qtdemux ! {codec}parse ! '
        f"rtp{codec}pay name=pay0 pt=96 config-interval=-1 )"
    )


class Clip:
    """A clip's access units in decode order, read once, to be replayed without end."""

    def __init__(self, path: str):
        self.codec = codec_of(path)
        pipeline = Gst.parse_launch(
            f'filesrc location="{path}" ! qtdemux ! {self.codec}parse config-interval=-1 ! '
            f"video/x-{self.codec},stream-format=byte-stream,alignment=au ! "
            "appsink name=sink sync=false max-buffers=0"
        )
        sink = pipeline.get_by_name("sink")
        pipeline.set_state(Gst.State.PLAYING)
        self.units = []  # (pts, dts, duration, is_key, bytes)
        self.caps = None
        while True:
            sample = sink.emit("pull-sample")
            if sample is None:
                break
            self.caps = sample.get_caps()
            buf = sample.get_buffer()
            ok, info = buf.map(Gst.MapFlags.READ)
            data = bytes(info.data) if ok else b""
            buf.unmap(info)
            key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
            self.units.append((buf.pts, buf.dts, buf.duration, key, data))
        pipeline.set_state(Gst.State.NULL)
        if not self.units:
            raise RuntimeError(f"no video access units in {path}")
        # One pass lasts from the first frame shown to the end of the last one: the next pass's
        # first frame is shown one frame after this pass's last. Decode times (earlier than the
        # presentation times with B-frames) start at 0 for each pass's shift.
        first_shown = min(u[0] for u in self.units)
        end = max(u[0] + (u[2] if u[2] != Gst.CLOCK_TIME_NONE else 0) for u in self.units)
        self.period = end - first_shown
        self.origin = min(u[1] if u[1] != Gst.CLOCK_TIME_NONE else u[0] for u in self.units)
        self.first_shown = first_shown

    def start_at(self, seconds: float):
        """The index of the key frame at or after `seconds` (the first unit when none), and how
        far into the clip it is shown, in ns."""
        want = self.first_shown + int(seconds * 1_000_000_000)
        for i, (pts, _dts, _dur, key, _data) in enumerate(self.units):
            if key and pts >= want:
                return i, pts - self.first_shown
        return 0, 0


class LoopFactory(GstRtspServer.RTSPMediaFactory):
    """Each client's pipeline is an appsrc fed with the clip's units, pass after pass."""

    def __init__(self, clip: Clip, freeze_after_ns=None, start=0.0):
        super().__init__()
        self.clip = clip
        self.freeze_after_ns = freeze_after_ns
        # Passes begin at unit `first`; `skip` ns of the clip are left out of the timestamps, so
        # the session's first frame is shown at 0 and the wrap to unit 0 continues without a jump.
        self.first, self.skip = clip.start_at(start)
        codec = clip.codec
        self.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=false ! "
            f"{codec}parse config-interval=-1 ! rtp{codec}pay name=pay0 pt=96 config-interval=-1 )"
        )
        self.connect("media-configure", self.on_configure)

    def on_configure(self, _factory, media):
        src = media.get_element().get_by_name_recurse_up("src")
        src.set_property("caps", self.clip.caps)
        state = {"i": self.first, "pass": 0}
        src.connect("need-data", self.on_need_data, state)

    def on_need_data(self, src, _length, state):
        clip = self.clip
        # A few units per call keep the queue fed without reading ahead by much.
        for _ in range(4):
            pts, dts, duration, key, data = clip.units[state["i"]]
            shift = state["pass"] * clip.period - clip.origin - self.skip
            if self.freeze_after_ns is not None and pts + shift >= self.freeze_after_ns:
                return  # frozen: no more video, the session stays
            buf = Gst.Buffer.new_wrapped(data)
            buf.pts = pts + shift if pts != Gst.CLOCK_TIME_NONE else pts
            buf.dts = dts + shift if dts != Gst.CLOCK_TIME_NONE else dts
            buf.duration = duration
            if not key:
                buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
            if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                return
            state["i"] += 1
            if state["i"] == len(clip.units):
                state["i"] = 0
                state["pass"] += 1


def main() -> int:
    args = sys.argv[1:]
    loop = "--loop" in args
    args = [a for a in args if a != "--loop"]
    freeze_after_ns = None
    if "--freeze-after" in args:
        i = args.index("--freeze-after")
        try:
            freeze_after_ns = int(float(args[i + 1]) * 1_000_000_000)
        except (IndexError, ValueError):
            print("--freeze-after needs a number of seconds", file=sys.stderr)
            return 2
        del args[i : i + 2]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    port = args[0]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    mounts = server.get_mount_points()
    for arg in args[1:]:
        mount, sep, path = arg.partition("=")
        if not sep or not mount or not path:
            print(f"bad argument {arg!r}: expected MOUNT=FILE[@START]", file=sys.stderr)
            return 2
        start = 0.0
        if "@" in path and not os.path.isfile(path):
            path, _, at = path.rpartition("@")
            try:
                start = float(at)
            except ValueError:
                print(f"bad argument {arg!r}: START must be seconds", file=sys.stderr)
                return 2
            if not (loop or freeze_after_ns is not None):
                print(f"bad argument {arg!r}: @START needs --loop", file=sys.stderr)
                return 2
        if not os.path.isfile(path):
            print(f"no such file: {path}", file=sys.stderr)
            return 2
        path = os.path.abspath(path)
        if loop or freeze_after_ns is not None:
            factory = LoopFactory(Clip(path), freeze_after_ns, start)
        else:
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(launch_line(path))
        factory.set_shared(False)
        mounts.add_factory("/" + mount.strip("/"), factory)
        mode = " (looping)" if loop else ""
        if start:
            mode += f" from {start:g} s"
        if freeze_after_ns is not None:
            mode = f" (freezing after {freeze_after_ns / 1e9:g} s)"
        print(f"mount /{mount.strip('/')} -> {path}{mode}", file=sys.stderr)
    # attach() binds and listens; it returns 0 when the port cannot be bound.
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
