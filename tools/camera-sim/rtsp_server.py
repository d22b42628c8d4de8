#!/usr/bin/python3
"""A real RTSP test camera: GStreamer's RTSP server (Debian: gir1.2-gst-rtsp-server-1.0, python3-gi).

Prints exactly one line `READY <url> <url> ...` on stdout once the socket is bound, so a controller can
wait for it. Must run under the system python (/usr/bin/python3): pyenv/venv pythons have no `gi`.
"""
import argparse, ctypes, os, re, signal, subprocess, sys, tempfile

# Plain Python handlers until the GLib loop runs (importing gi + remuxing can take a while under load);
# subprocess.run kills its ffmpeg child when this raises.
for _s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_s, lambda *_: sys.exit(0))

import gi  # noqa: E402
gi.require_version('Gst', '1.0')
gi.require_version('GstRtspServer', '1.0')
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PATTERN_RE = re.compile(r'^pattern(?::(\d+)x(\d+)(?:@(\d+))?)?(?::([a-z0-9-]+))?$')
MAX_LOOP_BYTES = 300 * 1024 * 1024


def die_with_parent():
    # PR_SET_PDEATHSIG: if the controlling node process dies without stopping us, we get SIGTERM
    # instead of living on as an orphan that holds the port (and, for ffmpeg, a half-written file).
    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def pattern_launch(m):
    w, h, fps = int(m[1] or 640), int(m[2] or 360), int(m[3] or 15)
    style = m[4] or 'smpte'
    # horizontal-speed scrolls static patterns so every frame differs (motion detectors see motion);
    # baseline + zerolatency: no B-frames, so a client's first decoded frame is the first one sent.
    kbps = max(200, min(4000, w * h * fps // 3000))
    return (f'( videotestsrc is-live=true pattern={style} horizontal-speed=4 '
            f'! video/x-raw,width={w},height={h},framerate={fps}/1 '
            f'! timeoverlay font-desc="Sans 24" ! videoconvert ! video/x-raw,format=I420 '
            f'! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps * 2} bitrate={kbps} '
            f'! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )')


def file_launch(path):
    # Video only: RTSP clients of this camera only decode video; an unlinked audio pad is harmless.
    loc = path.replace('\\', '\\\\').replace('"', '\\"')
    return (f'( filesrc location="{loc}" ! qtdemux name=d d.video_0 ! queue ! h264parse '
            f'! rtph264pay name=pay0 pt=96 config-interval=1 )')


def looped_copy(path, seconds):
    """Stream-copy the clip N times into an unlinked temp file; return a /proc path to it.

    GstRtspServer cannot loop a file, and segment seeks inside its managed pipeline fight its own
    state handling. A remux keeps timestamps continuous, so clients see one long, seamless stream.
    """
    probe = subprocess.run(['ffprobe', '-v', 'error', '-show_entries', 'format=duration',
                            '-of', 'default=nw=1:nk=1', path], capture_output=True, text=True, check=True)
    duration = max(0.1, float(probe.stdout.strip() or 1))
    size = max(1, os.path.getsize(path))
    loops = max(1, min(int(seconds / duration + 1), MAX_LOOP_BYTES // size))
    fd, tmp = tempfile.mkstemp(prefix='vigil-camera-sim-', suffix='.mp4')
    try:
        subprocess.run(['ffmpeg', '-nostdin', '-v', 'error', '-stream_loop', str(loops - 1), '-i', path,
                        '-c', 'copy', '-an', '-y', tmp], check=True, preexec_fn=die_with_parent)
    finally:
        # Unlink now and serve through the still-open fd: nothing leaks even if we are SIGKILLed.
        os.unlink(tmp)
    return f'/proc/{os.getpid()}/fd/{fd}', loops * duration


def main():
    ap = argparse.ArgumentParser(description='RTSP test camera (GStreamer RTSP server).')
    ap.add_argument('--port', type=int, default=8554, help='TCP port on 127.0.0.1 (0 = any free port)')
    ap.add_argument('--mount', action='append', default=[], metavar='NAME=SOURCE',
                    help='NAME=pattern[:WxH[@FPS]][:STYLE] | NAME=file:/abs.mp4 | NAME=file-loop:/abs.mp4')
    ap.add_argument('--loop', action='store_true', help='loop every file mount')
    ap.add_argument('--loop-seconds', type=float, default=3600, help='length of a looped stream')
    ap.add_argument('--shared', action='store_true', help='one pipeline shared by all clients')
    args = ap.parse_args()
    if not args.mount:
        ap.error('at least one --mount is required')
    die_with_parent()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address('127.0.0.1')
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    names = []
    for spec in args.mount:
        name, sep, source = spec.partition('=')
        if not sep or not re.fullmatch(r'[A-Za-z0-9_.-]+', name):
            ap.error(f'bad --mount {spec!r}: expected NAME=SOURCE')
        if m := PATTERN_RE.match(source):
            launch = pattern_launch(m)
        elif source.startswith(('file:', 'file-loop:')):
            kind, _, path = source.partition(':')
            if not os.path.isabs(path) or not os.path.isfile(path):
                ap.error(f'--mount {name}: not an absolute path to a file: {path!r}')
            if args.loop or kind == 'file-loop':
                path, secs = looped_copy(path, args.loop_seconds)
                print(f'{name}: looping for {secs:.0f} s', file=sys.stderr, flush=True)
            launch = file_launch(path)
        else:
            ap.error(f'bad --mount {spec!r}: unknown source')
        try:
            # Fail at startup, not at the first client: catches a bad STYLE or a missing plugin (x264enc: -ugly).
            Gst.parse_launch(launch.strip('() '))
        except GLib.Error as e:
            ap.error(f'--mount {name}: pipeline does not build: {e.message}')
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        # Not shared: each client gets its own pipeline, so a file plays from its first frame.
        factory.set_shared(args.shared)
        mounts.add_factory('/' + name, factory)
        names.append(name)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f'cannot listen on 127.0.0.1:{args.port}: address already in use?', file=sys.stderr, flush=True)
        sys.exit(98)
    # GLib's handlers, not Python's: Python handlers never run while the C main loop blocks. Returning
    # SOURCE_CONTINUE keeps them installed (removing the source would restore SIG_DFL for a 2nd signal).
    for s in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, s, lambda: (loop.quit(), GLib.SOURCE_CONTINUE)[1])
    port = server.get_bound_port()
    print('READY ' + ' '.join(f'rtsp://127.0.0.1:{port}/{n}' for n in names), flush=True)
    loop.run()


if __name__ == '__main__':
    main()
