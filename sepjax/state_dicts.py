"""PyTorch state_dicts as NumPy arrays: read `.pth` without torch, read and write `.safetensors` and `.npz`.

A `.pth` file from `torch.save` (the zip format of PyTorch ≥ 1.6) is a pickle whose tensors point into
raw little-endian storages stored beside it in the archive. `read_state_dict` unpickles it with an
allow-list of the few PyTorch names a state_dict uses (tensor rebuilders, storage types, OrderedDict),
mapped onto NumPy, so no code from the file runs and torch need not be installed. Writing `.pth` needs
torch (`pip install -e '.[torch]'`); `.safetensors` and `.npz` need nothing extra.

A training checkpoint holding the weights under `model_state_dict` (as the official SepReformer's
`run.py` saves them), `state_dict` or `model` reads as those weights.
"""

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from sepjax.errors import InputError
from sepjax.files import staged_file

WEIGHT_KEYS = ("model_state_dict", "state_dict", "model")
"""Where training checkpoints keep the model's weights, in the order they are looked for."""
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SUFFIXES = (*TORCH_SUFFIXES, ".safetensors", ".npz")

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16, "LongStorage": np.int64,
    "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "BFloat16Storage": "bfloat16",
}


class StateDictError(InputError):
    """A weights file that cannot be read or written; the message names it."""


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a `.pth`/`.pt`/`.ckpt`/`.bin`, `.safetensors` or `.npz` file, by name."""
    path = Path(path)
    if not path.is_file():
        raise StateDictError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in TORCH_SUFFIXES:
            loaded = _read_torch(path)
        elif suffix == ".safetensors":
            from safetensors.numpy import load_file

            loaded = load_file(str(path))
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                loaded = {k: archive[k] for k in archive.files}
            prefixed = {k[len("state_dict/"):]: v for k, v in loaded.items() if k.startswith("state_dict/")}
            loaded = prefixed or loaded
        else:
            raise StateDictError(f"{path}: unknown weights format {suffix!r}; expected one of {', '.join(SUFFIXES)}")
    except StateDictError:
        raise
    except Exception as err:  # a damaged archive raises whatever its reader raises
        raise StateDictError(f"{path}: not a readable {suffix} state_dict ({type(err).__name__}: {err})") from err
    return _weights(loaded, path)


def write_state_dict(path: str | Path, tensors: dict[str, np.ndarray], *, overwrite: bool = False) -> Path:
    """Write `tensors` atomically as `.safetensors`, `.npz` or (with torch installed) `.pth`/`.pt`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".npz", ".pth", ".pt"):
        raise StateDictError(f"{path}: cannot write {suffix!r}; use .safetensors, .npz or .pth")
    if suffix in (".pth", ".pt"):
        try:
            import torch
        except ImportError as err:
            raise StateDictError(f"{path}: writing .pth needs torch (pip install -e '.[torch]'); "
                                 ".safetensors and .npz need nothing extra") from err
    with staged_file(path, overwrite=overwrite) as staging:
        if suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file({k: np.array(v, order="C") for k, v in tensors.items()}, str(staging))
        elif suffix == ".npz":
            with open(staging, "wb") as f:
                np.savez(f, **tensors)
        else:
            torch.save(OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in tensors.items()), staging)
    return path


def _weights(loaded, path: Path) -> dict[str, np.ndarray]:
    if isinstance(loaded, dict):
        for key in WEIGHT_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise StateDictError(f"{path}: holds no state_dict (a mapping of names to tensors, or a checkpoint with "
                             f"one under {' or '.join(WEIGHT_KEYS)})")
    bad = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise StateDictError(f"{path}: entries that are not named tensors: {', '.join(bad[:5])}")
    return dict(loaded)


class _Storage:
    """A storage type named in the pickle; only its dtype matters."""

    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage type torch.{name}")
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_ignored) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v2`: a strided view of the flat storage, copied."""
    if not size:
        return storage[offset : offset + 1].reshape(()).copy()
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view)


def _rebuild_parameter(data, *_ignored):
    return data


class _TorchUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _Storage(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a plain state_dict")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent record {kind!r}")
        raw = self.archive.read(f"{self.prefix}data/{key}")
        if storage_type.dtype == "bfloat16":  # NumPy has no bfloat16: widen to float32 exactly
            half = np.frombuffer(raw, "<u2", count=numel).astype(np.uint32) << 16
            return half.view(np.float32)
        return np.frombuffer(raw, np.dtype(storage_type.dtype).newbyteorder("<"), count=numel)


def _read_torch(path: Path):
    if not zipfile.is_zipfile(path):
        raise StateDictError(f"{path}: not a zip-format torch checkpoint (saved by PyTorch older than 1.6, or "
                             "not a checkpoint); re-save it with torch.save, or as .safetensors")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise StateDictError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        order = archive.read(f"{prefix}byteorder").decode().strip() if f"{prefix}byteorder" in archive.namelist() \
            else "little"
        if order != "little":
            raise StateDictError(f"{path}: big-endian checkpoints are not supported")
        return _TorchUnpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix).load()
