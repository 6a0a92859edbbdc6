"""Host side: training and transfer learning from YAML recipes (imports TensorFlow)."""

from edgecnn.host._tfenv import prepare

prepare()
