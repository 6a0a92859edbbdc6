"""Host-side conversion and quantisation (imports TensorFlow when a converter runs)."""
