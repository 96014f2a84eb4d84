"""gdscope: measure what deep-learning optimization theory predicts about training, and judge it.

>>> import gdscope as gs
>>> x, y = gs.data.sphere(n=24, d=8, seed=0)
>>> net = gs.models.two_layer(d_in=8, width=512, seed=0)
>>> opt = gs.optim.make_optimizer("gd", net, lr=1.0)
>>> trace = gs.train(net, opt, (x, y), steps=10)
>>> trace.status
'completed'
"""

# Exports load on first use (names and types: __init__.pyi), so that
# reading a store or writing a report never imports torch.
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)

__version__ = "0.1.0"
