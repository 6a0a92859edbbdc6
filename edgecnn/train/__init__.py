"""Training and transfer learning from YAML recipes (host side: imports TensorFlow)."""
