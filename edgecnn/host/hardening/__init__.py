"""Host side: hardening tools: fuzzing model files (fuzz.py) and probing untrusted files in a child (isolate.py).

What a model file is (the sniffer) lives in ``edgecnn.formats``, which the device side reads too.
"""
