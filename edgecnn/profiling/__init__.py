"""Device side: latency profiling on the device (no TensorFlow): measure, statistics, system context, reports, estimates."""
