"""A tiny RTSP server on loopback for tests (GStreamer's gst-rtsp-server through PyGObject).

Run with the system Python that has `gi`: python3 rtsp_server.py PORT. Serves rtsp://127.0.0.1:PORT/test,
a live test pattern as RTP/JPEG (no H.264 encoder needed). Prints 'ready' when listening.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1] if len(sys.argv) > 1 else "8554")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=1 pattern=ball ! video/x-raw,width=160,height=120,framerate=15/1,format=I420 ! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
