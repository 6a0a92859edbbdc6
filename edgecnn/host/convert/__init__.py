"""Host side: conversion and quantisation (imports TensorFlow when a converter runs).

Until this package moves into the host wing (issue 31), its name is also the public function ``edgecnn.host.convert``:
importing ``edgecnn.host.convert.<module>`` makes Python set the package as the attribute ``convert`` of ``edgecnn``,
over the function. So the package is callable, and calling it is calling ``edgecnn.host.convert`` (the same function,
with its signature): ``edgecnn.host.convert(model, device)`` works whichever of the two the name holds.
"""

import sys
import types

from edgecnn.host._tfenv import prepare

prepare()


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from edgecnn import _public_convert

        return _public_convert(*args, **kwargs)

    @property
    def __signature__(self):  # help() and inspect show the function's
        import inspect

        from edgecnn import _public_convert

        return inspect.signature(_public_convert)


sys.modules[__name__].__class__ = _CallablePackage
