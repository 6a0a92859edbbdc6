"""A stop closes an HTTP camera from another thread while its capture thread is still opening it (a slow or loaded
machine widens that window): the open fails as a StreamError, never with a traceback from the capture thread."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from edgecnn.errors import StreamError
from edgecnn.stream.capture import Capture
from edgecnn.stream.sources import HTTPSource, SourceOptions, open_source

sys.path.insert(0, str(Path(__file__).parent))
from mjpeg_server import MJPEGServer  # noqa: E402


@pytest.mark.parametrize("moment", ["after the request", "after the answer"])
def test_a_close_while_opening_is_a_stream_error(monkeypatch, moment):
    import http.client

    with MJPEGServer(fps=20) as srv:
        src = open_source(srv.url, SourceOptions(2.0, 2.0))
        assert isinstance(src, HTTPSource)
        if moment == "after the request":  # the stop comes while the camera's answer is awaited
            real = http.client.HTTPConnection.getresponse

            def getresponse(conn):
                src.close()
                return real(conn)

            monkeypatch.setattr(http.client.HTTPConnection, "getresponse", getresponse)
        else:  # the stop comes between the answer's headers and the stream's set-up
            real = HTTPSource._request

            def request(self):
                resp = real(self)
                self.close()
                return resp

            monkeypatch.setattr(HTTPSource, "_request", request)
        with pytest.raises(StreamError, match=r"the connection to http://127\.0\.0\.1:\d+/\S* was closed while opening"):
            src.open()


def test_stopping_a_capture_while_it_reconnects_leaves_no_thread_error(monkeypatch):
    """The camera drops the connection; the capture thread is reopening it when stop() closes the source: the
    thread ends quietly (it used to die on an AttributeError, a traceback on the terminal)."""
    errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    real = HTTPSource._request
    reopening, stopped = threading.Event(), threading.Event()

    def request(self):
        resp = real(self)
        if threading.current_thread() is not threading.main_thread():  # the capture thread's reconnect
            reopening.set()
            stopped.wait(5)  # the stop closes the source here, between the answer and the stream's set-up
        return resp

    monkeypatch.setattr(HTTPSource, "_request", request)
    with MJPEGServer(fps=20, drop_every=0.5) as srv:
        cap = Capture(open_source(srv.url, SourceOptions(2.0, 2.0))).start()
        assert reopening.wait(10)
        cap.stop()
        stopped.set()
        cap._thread.join(5)
        assert not cap._thread.is_alive()
    assert errors == []
