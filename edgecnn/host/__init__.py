"""Host side: the wing that needs the training toolchain (TensorFlow, Keras, tf2onnx, NNCF, scikit-learn).

``data`` (datasets), ``models`` (the zoo), ``train`` (recipes, transfer learning), ``convert`` (conversion,
quantisation, int8 recovery, QAT, the parity gate), ``lab`` (the latency lab: benchmark, latency calibration),
``hardening`` (fuzzing, probing untrusted files), ``cli`` (the verbs that need all this) and the demo.
Nothing outside ``edgecnn.host`` imports it: the device side (runtime, stream, serve, profiling, remote, manifest)
runs on a board with ``pip install "edgecnn[litert]"``. The one crossing is by name: ``edgecnn.cli`` lists the host
verbs and imports their modules for ``--help`` (they import the toolchain only when they run).
"""
