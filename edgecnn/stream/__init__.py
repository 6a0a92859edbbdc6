"""Device side: frame sources and sinks chosen by URI, and the classify loop (no TensorFlow)."""
