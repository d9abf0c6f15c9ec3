"""Per-layer profile of one forward pass: shapes, params, MAdds and memory traffic (the roofline view).

Every leaf module that runs (conv, linear, BatchNorm, activation, pooling, ...) is one row, costed as one kernel: it
reads its input activations and its own weights (parameters and floating-point buffers) and writes its output once.
A deploy-form conv with a fused ReLU is therefore one read and one write, as its oneDNN kernel is. Tensor ops that
modules run outside leaf modules (the residual add, Ghost's concat, DFC's pooling, upsampling and multiply, SE's mean
and gate, the input's layout copy) are rows too, caught by a dispatch mode and named ``<parent>.<aten op>``: they
move bytes but, in the papers' convention, cost no MAdds. Views (slices, flatten, an identity) move no data: no row.

MAdds of convolutions and linear layers use the textbook formula (conv: output elements x in_ch/groups x kh x kw;
linear: in x out per row); any other conv or matmul is counted as ``FlopCounterMode`` counts it, so the total equals
:func:`count_madds`. Memory: ``activation_bytes`` sums every new output tensor (in-place writes excluded);
``peak_activation_bytes`` is the most activation memory alive at once in this eager pass, input included, weights
excluded: each tensor is tracked until Python frees it (a leaf's internal temporaries are not seen, as if fused).
Bytes are those of the tensors' dtype (float32: 4).
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

from ..counting import count_params


@dataclass
class LayerProfile:
    """One leaf module call or one tensor op outside leaf modules."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    madds: int
    bytes_read: int
    bytes_written: int
    in_place: bool = False  # the output overwrites an input (in-place ReLU, ``add_``): no new memory

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: MAdds per byte moved."""
        return self.madds / self.bytes_moved if self.bytes_moved else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "output_shape": list(self.output_shape), "bytes_moved": self.bytes_moved,
                "intensity": round(self.intensity, 4)}


@dataclass
class ModelProfile:
    """Rows in execution order and the totals of one forward pass of ``batch`` images of ``input_size``."""

    input_size: tuple[int, int]
    in_chans: int
    batch: int
    params: int
    layers: list[LayerProfile]
    peak_activation_bytes: int

    @property
    def madds(self) -> int:
        return sum(r.madds for r in self.layers)

    @property
    def bytes_read(self) -> int:
        return sum(r.bytes_read for r in self.layers)

    @property
    def bytes_written(self) -> int:
        return sum(r.bytes_written for r in self.layers)

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def activation_bytes(self) -> int:
        return sum(r.bytes_written for r in self.layers if not r.in_place)

    @property
    def intensity(self) -> float:
        return self.madds / self.bytes_moved if self.bytes_moved else 0.0

    def top(self, n: int = 10, by: str = "madds") -> list[LayerProfile]:
        """The ``n`` heaviest rows by ``"madds"`` or by ``"bytes"`` moved."""
        if by not in ("madds", "bytes"):
            raise ValueError(f"by must be 'madds' or 'bytes', got {by!r}")
        key = (lambda r: r.madds) if by == "madds" else (lambda r: r.bytes_moved)
        return sorted(self.layers, key=key, reverse=True)[:n]

    def as_dict(self, top: int = 10) -> dict:
        return {
            "input_size": list(self.input_size), "in_chans": self.in_chans, "batch": self.batch,
            "params": self.params, "madds": self.madds, "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written, "bytes_moved": self.bytes_moved,
            "activation_bytes": self.activation_bytes, "peak_activation_bytes": self.peak_activation_bytes,
            "intensity": round(self.intensity, 4),
            "heaviest_by_madds": [r.name for r in self.top(top, "madds")],
            "heaviest_by_bytes": [r.name for r in self.top(top, "bytes")],
            "layers": [r.as_dict() for r in self.layers],
        }


def _tensors(obj: object) -> list[torch.Tensor]:
    return [t for t in tree_leaves(obj) if isinstance(t, torch.Tensor)]


def _nbytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _aliases(outs: list[torch.Tensor], ins: list[torch.Tensor]) -> bool:
    return bool({_storage(t) for t in outs} & {_storage(t) for t in ins})


def _leaf_madds(module: nn.Module, outs: list[torch.Tensor], counted: int) -> int:
    if isinstance(module, nn.Linear):
        return outs[0].numel() * module.in_features
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        return outs[0].numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return counted  # any other leaf: the conv/matmul MAdds its ops did


class _Recorder(TorchDispatchMode):
    """Module hooks make the leaf rows; ``__torch_dispatch__`` sees every op and makes the rows of those outside
    leaves. Both track the lifetime of each activation storage for the peak."""

    def __init__(self, weights: set[int]) -> None:
        super().__init__()
        self.weights = weights  # storages of parameters and buffers: not activations
        self.rows: list[LayerProfile] = []
        self.names: Counter[str] = Counter()
        self.stack = [""]  # the module running now (innermost last)
        self.depth = 0  # > 0 inside a leaf module
        self.leaf_madds = 0
        self.alive: dict[int, list[int]] = {}  # storage -> [Python tensors alive on it, its bytes]
        self.live = self.peak = 0

    def track(self, tensors: list[torch.Tensor]) -> None:
        for t in tensors:
            key = _storage(t)
            if t.numel() == 0 or key in self.weights:
                continue
            entry = self.alive.get(key)
            if entry is None:
                entry = self.alive[key] = [0, t.untyped_storage().nbytes()]
                self.live += entry[1]
                self.peak = max(self.peak, self.live)
            entry[0] += 1
            weakref.finalize(t, self._release, key).atexit = False

    def _release(self, key: int) -> None:
        entry = self.alive.get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                self.live -= entry[1]
                del self.alive[key]

    def add_row(self, name: str, kind: str, outs: list[torch.Tensor], params: int, madds: int, read: int,
                in_place: bool) -> None:
        self.names[name] += 1
        if self.names[name] > 1:  # a module called twice, or one op twice in one forward
            name = f"{name}#{self.names[name]}"
        self.rows.append(LayerProfile(name, kind, tuple(outs[0].shape), params, madds, read, _nbytes(outs), in_place))

    def pre_hook(self, name: str, leaf: bool):
        def hook(module: nn.Module, args: tuple) -> None:
            self.stack.append(name)
            if leaf:
                self.depth += 1
                self.leaf_madds = 0
        return hook

    def post_hook(self, name: str, leaf: bool):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            self.stack.pop()
            if not leaf:
                return
            self.depth -= 1
            outs, ins = _tensors(output), _tensors(args)
            self.track(outs)
            in_place = bool(getattr(module, "inplace", False))
            if not outs or (not in_place and _aliases(outs, ins)):
                return  # identity, flatten, dropout in eval: a view, nothing moves
            own = [*module.parameters(recurse=False), *(b for b in module.buffers(recurse=False)
                                                         if b.is_floating_point())]
            params = sum(p.numel() for p in module.parameters(recurse=False))
            self.add_row(name or type(module).__name__, type(module).__name__, outs, params,
                         _leaf_madds(module, outs, self.leaf_madds), _nbytes(ins) + _nbytes(own), in_place)
        return hook

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        outer, self.leaf_madds = self.leaf_madds, 0
        self.depth += 1  # the ops a composite runs are counted into it, not rows of their own
        try:
            out = NotImplemented
            if packet not in flop_registry:  # composite ops (conv2d, linear, upsample): count the ops they run,
                with self:  # as FlopCounterMode does
                    out = func.decompose(*args, **kwargs)
            if out is NotImplemented:
                out = func(*args, **kwargs)
                if packet in flop_registry:
                    self.leaf_madds += flop_registry[packet](*args, **kwargs, out_val=out) // 2
        finally:
            self.depth -= 1
            madds = self.leaf_madds
            self.leaf_madds = outer + madds
        if self.depth:
            return out
        outs, ins = _tensors(out), _tensors((args, kwargs))
        self.track(outs)
        in_place = func._schema.is_mutable
        if outs and (in_place or not _aliases(outs, ins)):  # views (and ``contiguous`` of a contiguous tensor) alias
            parent, op = self.stack[-1], packet.__name__
            self.add_row(f"{parent}.{op}" if parent else op, f"aten.{op}", outs, 0, madds, _nbytes(ins), in_place)
        return out


def profile_layers(
    model: nn.Module, input_size: int | tuple[int, int] = (224, 224), in_chans: int | None = None, batch: int = 1
) -> ModelProfile:
    """Profile one forward pass of ``batch`` zero images through ``model`` (eval mode, inference mode)."""
    in_chans = in_chans if in_chans is not None else getattr(model, "in_chans", 3)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    param = next(model.parameters(), None)
    recorder = _Recorder({_storage(t) for t in [*model.parameters(), *model.buffers()] if t.numel()})
    handles = []
    for name, module in model.named_modules():
        leaf = next(module.children(), None) is None
        handles.append(module.register_forward_pre_hook(recorder.pre_hook(name, leaf)))
        handles.append(module.register_forward_hook(recorder.post_hook(name, leaf), always_call=True))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            x = torch.zeros(batch, in_chans, *size, device=param.device if param is not None else "cpu",
                            dtype=param.dtype if param is not None else torch.float32)
            recorder.track([x])
            with recorder:
                model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return ModelProfile(size, in_chans, batch, count_params(model), recorder.rows, recorder.peak)
