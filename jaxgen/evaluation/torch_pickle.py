"""Reads PyTorch checkpoint files into numpy arrays without importing torch.

Supported containers:

  * `torch.save` zip archives (PyTorch >= 1.6): `<root>/data.pkl` is a pickle
    whose tensors refer, through persistent ids, to raw storages stored as
    `<root>/data/<key>`.
  * TorchScript archives (`torch.jit.save`): the same layout, except that
    `data.pkl` pickles the module tree itself (objects of `__torch__.*`
    classes whose state dicts hold the parameters); the tree is flattened to
    dotted names, as `ScriptModule.state_dict()` would name them.
  * Legacy `torch.save` files (PyTorch < 1.6, e.g. checkpoints released in
    2019): a sequence of pickles followed by the raw storages, each preceded
    by its element count as a little-endian int64.

Only a fixed set of globals is resolved (tensor rebuild functions, storage
types, `collections.OrderedDict`, TorchScript list builders); everything else
is rejected, so a malicious file cannot run code. TorchScript classes are
replaced by inert placeholder objects.
"""

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Callable, Dict, Union

import numpy as np

PathOrFile = Union[str, bytes, BinaryIO]

# Storage class name -> numpy dtype. `BFloat16Storage` is widened on read
# because numpy has no bfloat16.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
# `torch.<dtype>` globals, which newer pickles use next to storage types.
_TORCH_DTYPES = {
    "float64": "DoubleStorage",
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
  """Stand-in for `torch.FloatStorage` and friends: only carries a dtype."""

  def __init__(self, name: str):
    self.name = name


class _Storage:
  """A storage whose bytes are read lazily from the archive."""

  def __init__(self, storage_type: _StorageType, key: str, numel: int,
               loader: Callable[[str], bytes]):
    self.storage_type = storage_type
    self.key = key
    self.numel = numel
    self._loader = loader
    self._array = None

  def array(self) -> np.ndarray:
    if self._array is None:
      self._array = _decode(self._loader(self.key), self.storage_type.name)
    return self._array


def _decode(raw: bytes, storage_name: str) -> np.ndarray:
  dtype = _STORAGE_DTYPES[storage_name]
  if dtype == "bfloat16":
    # bfloat16 is the top half of a float32.
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32)
  return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))


class _TensorRef:
  """A tensor to materialise once its storage bytes are available.

  Legacy files store the raw storages after the pickle, so tensors cannot be
  built while unpickling; `flatten_state` materialises them afterwards.
  """

  def __init__(self, storage: _Storage, storage_offset: int, size, stride):
    self.storage = storage
    self.storage_offset = storage_offset
    self.size = tuple(size)
    self.stride = tuple(stride)

  def materialize(self) -> np.ndarray:
    flat = self.storage.array()
    if not self.size:
      return np.array(flat[self.storage_offset])
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[self.storage_offset:], shape=self.size,
        strides=tuple(s * itemsize for s in self.stride), writeable=False)
    # Native byte order so downstream code (and jax) sees ordinary arrays.
    return np.ascontiguousarray(view).astype(flat.dtype.newbyteorder("="))


def _rebuild_tensor(storage: _Storage, storage_offset: int, size, stride,
                    *unused_args) -> _TensorRef:
  """Mirrors `torch._utils._rebuild_tensor_v2` (a strided view)."""
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
                       backward_hooks, unused_dtype, *unused_args):
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused_args):
  return data


class ScriptObject:
  """Placeholder for a TorchScript class instance; keeps its state dict."""

  qualified_name = "?"

  def __init__(self, *unused_args):
    self.state = {}

  def __setstate__(self, state):
    self.state = state if isinstance(state, dict) else {"__state__": state}


def _identity(value, *unused_args):
  return value


def _build_list(values):
  return list(values)


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.jit._pickle", "build_intlist"): _build_list,
    ("torch.jit._pickle", "build_doublelist"): _build_list,
    ("torch.jit._pickle", "build_boollist"): _build_list,
    ("torch.jit._pickle", "build_tensorlist"): _build_list,
    ("torch.jit._pickle", "build_genericlist"): _build_list,
    ("torch.jit._pickle", "restore_type_tag"): _identity,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that only knows tensors, storages and plain containers."""

  def __init__(self, file: BinaryIO, persistent_load: Callable[[Any], Any]):
    super().__init__(file, encoding="utf-8")
    self._persistent_load = persistent_load
    self._script_classes = {}

  def persistent_load(self, pid):
    return self._persistent_load(pid)

  def find_class(self, module: str, name: str):
    if (module, name) in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == "torch" and name in _TORCH_DTYPES:
      return _StorageType(_TORCH_DTYPES[name])
    if module.startswith("__torch__"):
      key = f"{module}.{name}"
      if key not in self._script_classes:
        self._script_classes[key] = type(
            name, (ScriptObject,), {"qualified_name": key})
      return self._script_classes[key]
    raise pickle.UnpicklingError(
        f"Refusing to load global {module}.{name}: not a tensor or container "
        "type this reader knows.")


def _storage_type_of(value) -> _StorageType:
  if isinstance(value, _StorageType):
    return value
  raise pickle.UnpicklingError(f"Unexpected storage type {value!r}.")


def _load_zip(zf: zipfile.ZipFile, pickle_name: str = "data.pkl") -> Any:
  """Unpickles `<root>/<pickle_name>` of a torch zip archive."""
  names = zf.namelist()
  candidates = [n for n in names if n.split("/")[-1] == pickle_name
                and n.count("/") == 1]
  if not candidates:
    raise ValueError(f"No top-level {pickle_name} in the archive.")
  pkl_name = candidates[0]
  root = pkl_name.split("/")[0]
  byteorder = "little"
  if f"{root}/byteorder" in names:
    byteorder = zf.read(f"{root}/byteorder").decode().strip()
  if byteorder != "little":
    raise NotImplementedError("Big-endian torch archives are not supported.")
  # TorchScript stores tensors of constants.pkl under constants/, the rest
  # under data/.
  data_dir = "constants" if pickle_name == "constants.pkl" else "data"

  def loader(key: str) -> bytes:
    return zf.read(f"{root}/{data_dir}/{key}")

  storages = {}

  def persistent_load(pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r}.")
    _, storage_type, key, _, numel = pid[:5]
    if key not in storages:
      storages[key] = _Storage(_storage_type_of(storage_type), key, numel,
                               loader)
    return storages[key]

  with zf.open(pkl_name) as f:
    return _RestrictedUnpickler(io.BytesIO(f.read()), persistent_load).load()


def _load_legacy(f: BinaryIO) -> Any:
  """Reads the pre-1.6 `torch.save` format."""

  def plain_load():
    return _RestrictedUnpickler(f, _no_persistent).load()

  if plain_load() != _LEGACY_MAGIC:
    raise ValueError("Not a torch checkpoint (bad magic number).")
  protocol = plain_load()
  if protocol != 1001:
    raise ValueError(f"Unsupported legacy torch protocol {protocol}.")
  sys_info = plain_load()
  if not sys_info.get("little_endian", True):
    raise NotImplementedError("Big-endian torch checkpoints are unsupported.")

  storages = {}

  def persistent_load(pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r}.")
    _, storage_type, key, _, numel, view_metadata = pid
    if view_metadata is not None:
      raise NotImplementedError("Legacy storage views are not supported.")
    if key not in storages:
      storages[key] = _Storage(_storage_type_of(storage_type), key, numel,
                               lambda k: raw_storages[k])
    return storages[key]

  raw_storages = {}
  result = _RestrictedUnpickler(f, persistent_load).load()
  keys = plain_load()
  for key in keys:
    storage = storages[key]
    (numel,) = struct.unpack("<q", f.read(8))
    itemsize = (2 if storage.storage_type.name == "BFloat16Storage" else
                np.dtype(_STORAGE_DTYPES[storage.storage_type.name]).itemsize)
    raw_storages[key] = f.read(numel * itemsize)
  return result


def _no_persistent(pid):
  raise pickle.UnpicklingError(f"Unexpected persistent id {pid!r}.")


def flatten_state(obj: Any, prefix: str = "") -> Dict[str, np.ndarray]:
  """Flattens dicts and TorchScript objects into `{dotted.name: array}`.

  Args:
    obj: the unpickled object: a (nested) dict of arrays, or a TorchScript
      module tree made of `ScriptObject`s.
    prefix: name prefix for the entries.

  Returns:
    An ordered dict from dotted names to numpy arrays; non-array leaves
    (flags, ints, lists of ints) are dropped.
  """
  out = collections.OrderedDict()
  if isinstance(obj, ScriptObject):
    obj = obj.state
  if isinstance(obj, _TensorRef):
    out[prefix] = obj.materialize()
  elif isinstance(obj, dict):
    for key, value in obj.items():
      if not isinstance(key, str):
        continue
      name = f"{prefix}.{key}" if prefix else key
      out.update(flatten_state(value, name))
  return out


def read_torch_file(source: PathOrFile) -> Dict[str, np.ndarray]:
  """Reads a torch checkpoint or TorchScript archive into numpy arrays.

  Args:
    source: a path, the file's bytes, or a binary file object, holding a
      `torch.save` checkpoint (zip or legacy) or a `torch.jit.save` archive.

  Returns:
    `{dotted.name: np.ndarray}`, named as `state_dict()` would name them.
  """
  if isinstance(source, (bytes, bytearray)):
    fileobj = io.BytesIO(source)
  elif isinstance(source, str):
    with open(source, "rb") as f:
      fileobj = io.BytesIO(f.read())
  else:
    fileobj = source
  if zipfile.is_zipfile(fileobj):
    fileobj.seek(0)
    with zipfile.ZipFile(fileobj) as zf:
      return flatten_state(_load_zip(zf))
  fileobj.seek(0)
  return flatten_state(_load_legacy(fileobj))
