"""Device side: ``edgecnn serve``, the camera as a long-running service (DESIGN.md, "The service").

The capture loop of ``classify`` with a debounced *state* per source (``state.py``) and outlets that other systems
speak: MQTT with Home Assistant discovery (``mqtt.py``), HTTP with Prometheus metrics (``http.py``, ``metrics.py``),
systemd readiness and watchdog (``systemd.py``). ``config.py`` reads serve.yaml strictly; ``service.py`` runs it all.
No outlet runs on the capture loop's thread: each has its own, fed through a bounded queue.
"""
