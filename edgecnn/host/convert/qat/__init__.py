"""Host side: quantisation-aware fine-tuning in Keras 3, the last rung of int8 recovery (issue #29).

``rewrite.qat_model`` folds batch norm and wraps the model in fake quantisers, ``equalise`` evens out channel
ranges between convolutions, ``finetune.fine_tune`` calibrates the ranges and fine-tunes on the training data,
``export`` writes int8 TFLite, ONNX (int8 initialisers) and OpenVINO (int8 weights) from the result.
"""
