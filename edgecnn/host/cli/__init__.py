"""Host side: the ``edgecnn`` verbs that need the training toolchain (``pip install "edgecnn[train]"``).

Each module has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` like the device verbs in
``edgecnn.cli``, which lists them by name; they import TensorFlow only inside ``run``.
"""
