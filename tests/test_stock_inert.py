"""``stock_layer`` reads a subclass's class dict: what Python itself puts there is not code.

Python 3.12 puts ``__type_params__`` in a PEP 695 generic class's dict, 3.13 ``__firstlineno__``
and ``__static_attributes__`` in every class's, 3.14 ``__annotate_func__`` (and, once read,
``__annotations_cache__``) in an annotated class's. Each made every subclass there non-stock,
and so sent it off the structured NTK route. The dicts are built here with ``type()``, so the
test runs on any version.
"""

import pytest
from torch import nn

from gdscope.probes._stock import stock_layer

NEWER_KEYS = {
    "__type_params__": (),  # 3.12
    "__firstlineno__": 7,  # 3.13
    "__static_attributes__": ("scale",),  # 3.13
    "__annotate_func__": None,  # 3.14
    "__annotations_cache__": {"scale": float},  # 3.14
}


SIZES = {nn.Linear: (3, 2), nn.Conv2d: (3, 2, 1)}  # in, out (and a 1×1 kernel)


def _subclass(base, **namespace):
    return type("Sub", (base,), {"__module__": __name__, "__qualname__": "Sub", **namespace})


@pytest.mark.parametrize("base", [nn.Linear, nn.Conv2d], ids=["Linear", "Conv2d"])
def test_a_subclass_with_the_keys_newer_pythons_add_is_still_stock(base):
    for key, value in NEWER_KEYS.items():
        assert stock_layer(_subclass(base, **{key: value})(*SIZES[base])), key
    assert stock_layer(_subclass(base, **NEWER_KEYS)(*SIZES[base]))


@pytest.mark.parametrize(
    "added",
    [
        {"forward": lambda self, x: 2 * nn.Linear.forward(self, x)},
        {"_add_bias": lambda self, out, dims: out},
        {"scale": 2.0},
    ],
    ids=["forward", "_add_bias", "constant"],
)
def test_with_those_keys_a_class_that_defines_code_is_still_refused(added):
    assert not stock_layer(_subclass(nn.Linear, **NEWER_KEYS, **added)(*SIZES[nn.Linear]))
