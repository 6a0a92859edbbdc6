"""Frame sources and sinks chosen by URI, and the classify loop (device side, no TensorFlow)."""
