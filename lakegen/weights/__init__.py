"""Read model weights safely, tensor by tensor, without running code from the file.

One reader per format (:mod:`.registry`): safetensors (header checked strictly,
data memory-mapped), numpy ``.npz`` (``allow_pickle`` stays off, object arrays
are refused), PyTorch ``.pt``/``.pth``/``.bin`` through
``torch.load(weights_only=True, mmap=True)`` only, and GGUF (:mod:`.gguf`, its
block quantisations dequantised). Over them: sharded checkpoints and PEFT LoRA
adapter folders (which files a model is made of is :mod:`lakegen.artifacts.layout`'s to
say), int8 tensors with per-channel scales (``X`` int8 beside ``X_scale``) read
as one logical tensor, and libraries' own quantisation (bitsandbytes,
optimum-quanto, :mod:`.dequant`) read back as values. Every failure is a
:class:`WeightsError` with a one-line message.
"""

from lakegen.artifacts.layout import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    INDEX_SUFFIX,
    MAX_MODEL_TENSORS,
    ShardIndex,
    adapter_weights_file,
    find_shard_index,
    is_adapter,
    model_location,
    read_shard_index,
)
from lakegen.weights.adapters import PEFT_PREFIX, Adapter, LoraPair, lora_delta, read_adapter
from lakegen.weights.base import (
    DEQUANTIZED,
    MAX_NAME,
    MAX_NDIM,
    MAX_TENSORS,
    PRECISION,
    SAFETENSORS_DTYPES,
    TensorInfo,
    WeightFile,
    WeightsError,
    to_float32,
)
from lakegen.weights.dense import dense_state_dict
from lakegen.weights.dequant import DequantizedFile, Scheme, open_weights
from lakegen.weights.model import open_model
from lakegen.weights.npz import NpzFile
from lakegen.weights.pytorch import TORCH_SUFFIXES, TorchFile
from lakegen.weights.quantized import SCALE_SUFFIX, Logical, dequantized, iter_float32, logical_tensors
from lakegen.weights.registry import READERS, Reader, register
from lakegen.weights.safetensors import (
    MAX_HEADER,
    RangedSafetensors,
    RangeSource,
    SafetensorsFile,
    Span,
    read_safetensors_header,
)
from lakegen.weights.sharded import ShardedWeights

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "DEQUANTIZED",
    "INDEX_SUFFIX",
    "MAX_HEADER",
    "MAX_MODEL_TENSORS",
    "MAX_NAME",
    "MAX_NDIM",
    "MAX_TENSORS",
    "PEFT_PREFIX",
    "PRECISION",
    "READERS",
    "SAFETENSORS_DTYPES",
    "SCALE_SUFFIX",
    "TORCH_SUFFIXES",
    "Adapter",
    "DequantizedFile",
    "Logical",
    "LoraPair",
    "NpzFile",
    "RangeSource",
    "RangedSafetensors",
    "Reader",
    "SafetensorsFile",
    "Scheme",
    "ShardIndex",
    "ShardedWeights",
    "Span",
    "TensorInfo",
    "TorchFile",
    "WeightFile",
    "WeightsError",
    "adapter_weights_file",
    "dense_state_dict",
    "dequantized",
    "find_shard_index",
    "is_adapter",
    "iter_float32",
    "logical_tensors",
    "lora_delta",
    "model_location",
    "open_model",
    "open_weights",
    "read_adapter",
    "read_safetensors_header",
    "read_shard_index",
    "register",
    "to_float32",
]
