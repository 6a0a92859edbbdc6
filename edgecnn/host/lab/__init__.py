"""Host side: the latency lab: ``edgecnn benchmark`` (every format x precision a profile allows, measured here and
estimated for the board), the latency estimate's calibration (small networks timed here, ``latency_calibration``,
``calibration_nets``) and its fit from measured boards (``measured_calibration``)."""
