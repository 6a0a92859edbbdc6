"""Training and transfer learning from YAML recipes (host side: imports TensorFlow)."""

from edgecnn._tfenv import prepare

prepare()
