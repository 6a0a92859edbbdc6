"""``http://[HOST]:PORT`` sink: the live page, served from a thread on the device.

The page shows the frames as they are classified (an MJPEG stream of the picture itself, nothing drawn on it: on a
64x64 frame any text would cover the subject), scaled up to at least 256 px with square pixels when they are small,
and beside it the top labels, the frame rate and a latency chart with labelled axes. Above them: the model (artifact,
format/precision, runtime) and the source; below the label: the counters (classified, read, dropped, corrupt,
reconnects) and the most frequent top classes. ``/state.json`` is the latest prediction record (what the jsonl sink
writes) plus the frame's size, ``run`` (model, source), ``counters``, ``classes`` and ``history`` (the inference
latency of the last frames, so that a page opened late starts with a full chart) (and, under ``edgecnn serve``,
``service``: the source's debounced state and its history of changes, shown under the chart); ``/stream.mjpg`` the
picture. When the source ends the page says so in a banner; when classify stops (the page's requests go unanswered)
it says the stream has stopped and greys the picture, instead of freezing on the last frame rate (issue #31).
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlparse

import cv2

from edgecnn.errors import StreamError
from edgecnn.stream.sinks import Sink

MIN_WIDTH_PX = 256  # the page scales smaller frames up by a whole factor to at least this width
HISTORY = 100  # frames in the latency chart, kept by the server so that a page opened late starts with them

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>edgecnn live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:1em}
h1{font-size:1.2em;font-weight:normal;color:#aaa;margin:0 0 .3em}
#run{color:#9ab;margin:0 0 .6em;font-size:.95em}
#banner{display:none;padding:.5em .8em;margin:0 0 .8em;border-radius:4px;font-size:1.1em}
#banner.ended{display:block;background:#553;color:#ffd}#banner.stopped{display:block;background:#622;color:#fdd}
body.stopped #video,body.stopped canvas{opacity:.45}
#main{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
#video{image-rendering:pixelated;image-rendering:crisp-edges;max-width:100%;background:#000;min-width:256px}
#side{min-width:320px}
#label{font-size:2em;margin-bottom:.2em}
#top{margin:0 0 .6em;padding:0;list-style:none;color:#bbb}
#stats,#counters,#classes{color:#bbb;margin-bottom:.5em}
canvas{background:#1b1b1b;display:block}
#service{font-size:1.3em;margin:.8em 0 .3em}#history{margin:0;padding-left:1.2em;color:#bbb;font-size:.9em}
</style></head><body><h1>edgecnn live</h1><div id="run"></div><div id="banner" role="status"></div>
<div id="main"><img id="video" src="/stream.mjpg" alt="the classified frames">
<div id="side"><div id="label">waiting...</div><ul id="top"></ul><div id="stats"></div><div id="counters"></div>
<div id="classes"></div>
<canvas id="chart" width="480" height="200" aria-label="inference latency of the last frames"></canvas>
<div id="service"></div><ol id="history"></ol></div></div>
<script>
const MIN_W=__MIN_WIDTH__, N=__HISTORY__;let hist=[],failures=0,lastOk=0,stopped=false;
function fit(w,h){ // whole-number scale so that pixels stay square and sharp
  const img=document.getElementById('video'); if(!w||img.dataset.w==w)return;
  const s=Math.max(1,Math.ceil(MIN_W/w)); img.dataset.w=w; img.style.width=(w*s)+'px'; img.style.height=(h*s)+'px';}
function nice(v){const p=Math.pow(10,Math.floor(Math.log10(v)));for(const m of [1,2,5,10]){if(m*p>=v)return m*p}return 10*p}
function chart(){
  const cv=document.getElementById('chart'),c=cv.getContext('2d'),W=cv.width,H=cv.height,L=52,R=10,T=22,B=34;
  c.clearRect(0,0,W,H);c.font='12px sans-serif';c.fillStyle='#ccc';c.strokeStyle='#444';c.lineWidth=1;
  const top=nice(Math.max(...hist,0.001)*1.1);
  c.textAlign='right';c.textBaseline='middle';
  for(let i=0;i<=4;i++){const v=top*i/4,y=H-B-(H-T-B)*i/4;c.beginPath();c.moveTo(L,y);c.lineTo(W-R,y);c.stroke();
    c.fillText(v<10?v.toFixed(v<1?2:1):v.toFixed(0),L-6,y);}
  c.textAlign='center';c.textBaseline='top';
  for(const k of [0,50,100]){const x=L+(W-L-R)*k/N;c.textAlign=k==100?'right':'center';c.fillText(k==100?'now':'-'+(N-k),x,H-B+4);}
  c.textAlign='center';
  c.fillText('frames (the last '+N+')',L+(W-L-R)/2,H-16);
  c.textAlign='left';c.fillText('inference latency, ms',L,4);
  c.strokeStyle='#4f4';c.lineWidth=2;c.beginPath();
  hist.forEach((v,i)=>{const x=L+(W-L-R)*(N-hist.length+i)/N,y=H-B-(H-T-B)*v/top;i?c.lineTo(x,y):c.moveTo(x,y)});c.stroke();}
function $(id){return document.getElementById(id)}
function esc(t){return String(t).replace(/[&<>]/g,'')}
function banner(kind,text){const b=$('banner');b.className=kind;b.textContent=text}
function show(s){
  if(s.run){$('run').textContent='model: '+s.run.model+' | source: '+s.run.source}
  if(s.top){fit(s.width,s.height);
    $('label').textContent=s.top[0].label+' '+(100*s.top[0].p).toFixed(1)+'%';
    $('top').innerHTML=s.top.slice(1).map(t=>'<li>'+esc(t.label)+' '+(100*t.p).toFixed(1)+'%</li>').join('');
    $('stats').textContent='frame '+s.frame+' | '+(s.ended?'-':s.fps.toFixed(1))+' FPS | inference '+
      s.latency_ms.inference.toFixed(2)+' ms | '+s.width+'x'+s.height+' px';}
  const n=s.counters;
  if(n)$('counters').textContent='classified '+n.classified+' | read '+n.read+' | dropped '+n.dropped+' | corrupt '+
    n.corrupt+' | reconnects '+n.reconnects;
  if(s.classes&&s.classes.length)$('classes').textContent='top classes: '+s.classes.map(c=>esc(c[0])+' x'+c[1]).join(', ');
  if(s.history&&s.frame!==show.last){show.last=s.frame;hist=s.history.slice(-N);chart();}
  if(s.ended)banner('ended','The source ended after '+(n?n.classified:s.frame)+' frames: the last frame stays here until classify is stopped.');
  if(s.service)service(s.service);}
function lost(){ // classify stopped: the page says so instead of freezing on the last figures
  stopped=true;document.body.className='stopped';
  banner('stopped','The stream has stopped: edgecnn classify is no longer running'+(lastOk?' (last answer at '+hms(lastOk/1000)+')':'')+
    '. What is shown is the last state; reload the page after starting classify again.');
  $('stats').textContent=$('stats').textContent.replace(/[0-9.]+ FPS/,'- FPS');}
async function tick(){try{const r=await fetch('/state.json',{cache:'no-store'});if(!r.ok)throw new Error(r.status);
  const s=await r.json();failures=0;lastOk=Date.now();
  if(stopped){stopped=false;document.body.className='';banner('','')}
  show(s);if(s.stopped){lost();return}
 }catch(e){if(++failures>=2&&!stopped)lost()}
 setTimeout(tick,stopped?2000:250)}
function hms(t){const d=new Date(t*1000),p=n=>String(n).padStart(2,'0');return p(d.getHours())+':'+p(d.getMinutes())+':'+p(d.getSeconds())}
function service(v){ // edgecnn serve: the debounced state and its last changes, newest first
  document.getElementById('service').textContent='state: '+(v.state===null?'unknown':v.state)+
    (v.since?' since '+hms(v.since):'')+' ('+v.changes+' change'+(v.changes==1?'':'s')+')';
  document.getElementById('history').innerHTML=v.history.slice(-10).reverse().map(c=>'<li>'+hms(c.time)+' '+
    esc(c.previous===null?'unknown':c.previous)+' &rarr; '+esc(c.state)+' ('+(100*c.confidence).toFixed(0)+'%)</li>').join('');}
chart();tick();
</script></body></html>""".replace("__MIN_WIDTH__", str(MIN_WIDTH_PX)).replace("__HISTORY__", str(HISTORY))


def _address(text: str) -> tuple[str, int]:
    """(host, port) of ``http://[HOST]:PORT``; port 0 lets the system choose a free one."""
    u = urlparse(text)
    try:
        port = u.port
    except ValueError:
        port = -1
    if port == -1 or (u.netloc.rpartition(":")[2] and port is None):
        raise StreamError(
            f"sink {text!r}: the port must be a number from 1 to 65535 (0: any free port); received "
            f"{u.netloc.rpartition(':')[2]!r}"
        )
    if u.path not in ("", "/"):
        raise StreamError(f"sink {text!r}: a web sink serves its own pages; give only http://[HOST]:PORT")
    return u.hostname or "0.0.0.0", 8080 if port is None else port


def machine_address() -> str | None:
    """This machine's address on the network it reaches others through (no packet is sent: a UDP socket only picks
    the route); None where it has no such route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like any outside address, never answered
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep the device's terminal and logs clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        sink = self.server.sink
        path = urlparse(self.path).path
        if path == "/":
            self._send(PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/state.json":
            self._send(json.dumps(sink.state()).encode(), "application/json")
        elif path == "/stream.mjpg":
            self._stream(sink)
        else:
            self.send_error(404)

    def _send(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, sink: WebSink) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        last = None
        try:
            while (jpeg := sink.next_jpeg(last)) is not None:
                if not jpeg:
                    continue  # no frame yet
                last = jpeg
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n"
                self.wfile.write(head + jpeg + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sink: WebSink


class WebSink(Sink):
    """The live page (see the module's docstring), on its own thread; ``port`` is the one it serves on."""

    schemes = ("http",)
    watched: ClassVar[bool] = True

    def __init__(self, uri: Any) -> None:
        self.host, port = _address(getattr(uri, "text", uri))
        self._jpeg: bytes | None = None
        self._state: dict[str, Any] = {}
        self._history: deque[float] = deque(maxlen=HISTORY)  # inference ms of the last frames, for a page opened late
        self._classes: Counter[str] = Counter()  # frames per top label
        self._extra: dict[str, Any] = {}  # run (model, source) and counters
        self._cond = threading.Condition()
        self._closed = False
        self.service_state: Callable[[], dict[str, Any]] | None = None  # edgecnn serve: the debounced state, history
        try:
            self.server = _Server((self.host, port), _Handler)
        except OSError as exc:
            raise StreamError(f"cannot serve on {self.host}:{port}: {exc.strerror}", hint="choose another port") from None
        self.server.sink = self
        self.port = self.server.server_address[1]
        # shutdown() waits for serve_forever's next poll: 0.05 s, not the default 0.5 s (Ctrl-C ends classify at once)
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="edgecnn-web", daemon=True
        )
        self._thread.start()

    def urls(self) -> list[str]:
        """Where to open the page: this machine's network address first, then the loopback one."""
        if self.host not in ("0.0.0.0", "::", ""):
            return [f"http://{self.host}:{self.port}/"]
        address = machine_address()
        return ([f"http://{address}:{self.port}/"] if address else []) + [f"http://localhost:{self.port}/"]

    def announce(self) -> list[str]:
        urls = self.urls()
        also = f" (on this machine: {urls[1]})" if len(urls) > 1 else ""
        return [f"live page: {urls[0]}{also}"]

    def write(self, frame, record, top, fps) -> None:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        with self._cond:
            if ok:
                self._jpeg = buf.tobytes()
            self._state = record | {"fps": fps, "width": int(frame.shape[1]), "height": int(frame.shape[0])}
            if (ms := (record.get("latency_ms") or {}).get("inference")) is not None:
                self._history.append(ms)
            if top:
                self._classes[str(top[0][0])] += 1
            self._cond.notify_all()

    def describe_run(self, info: dict[str, Any]) -> None:
        with self._cond:
            self._extra["run"] = {"model": info.get("model") or "-", "source": info.get("source") or "-"}

    def update(self, counters: dict[str, int]) -> None:
        with self._cond:
            self._extra["counters"] = dict(counters)

    def ended(self) -> None:
        """The source ended: the page keeps its last frame and says so."""
        with self._cond:
            self._state = self._state | {"ended": True}
            self._cond.notify_all()

    def state(self) -> dict[str, Any]:
        with self._cond:
            out = dict(self._state) | self._extra
            if self._state:
                out["history"] = list(self._history)
                out["classes"] = self._classes.most_common(5)
            if self._closed:
                out["stopped"] = True
        if self.service_state is not None:
            out["service"] = self.service_state()
        return out

    def next_jpeg(self, last: bytes | None) -> bytes | None:
        """A frame newer than ``last`` as soon as there is one, else the current one again after 0.5 s (clients that
        buffer, such as ffmpeg's probe and some browsers, must not wait on a paused stream); b"" while there is no
        frame yet; None once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or (self._jpeg is not None and self._jpeg is not last), timeout=0.5)
            return None if self._closed else (self._jpeg or b"")

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
