"""The built-in strategies, one module each; importing this package registers them, in this order (the order the
advisor lists its candidates in, ties included, and the CLI its choices)."""

from graft.strategy.builtin import linear  # noqa: F401
from graft.strategy.builtin import partial  # noqa: F401
from graft.strategy.builtin import lpft  # noqa: F401
from graft.strategy.builtin import full  # noqa: F401
from graft.strategy.builtin import two_phase  # noqa: F401
from graft.strategy.builtin import gradual  # noqa: F401
from graft.strategy.builtin import multilayer  # noqa: F401
from graft.strategy.builtin import scratch  # noqa: F401
from graft.strategy.builtin import adapter_warmup  # noqa: F401
