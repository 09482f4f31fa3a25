"""Import the Pixel 1 latency table published with ProxylessNAS (`mobile_trim.yaml`) as a `LatencyTable`.

The file maps one string per op (TFLite, batch 1, 224x224 input, milliseconds) to `{count, mean, var}`:

    Conv-input:224x224x3-output:112x112x32                                          -> stem (3x3)
    expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0  -> mbconv
    Conv_1-input:7x7x320-output:7x7x1280                                            -> feature_mix (1x1)
    Logits-input:7x7x1280-output:1000                                               -> classifier

`idskip:1` means the block has its identity shortcut.  Parsing is a chain of small pure functions:
`split_key` -> `parse_map` / `parse_int` -> one converter per op name -> `OpKey`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from proxyless.latency.keys import Context, OpKey
from proxyless.latency.lut import LatencyTable, LatencyTableError, Stat, is_count, is_nonnegative

MOBILE_CONTEXT = Context(batch=1, dtype="float32", backend="pixel1-tflite")
MOBILE_DEVICE = "Google Pixel 1 (table published with ProxylessNAS)"
STAT_FIELDS = ("count", "mean", "var")


# -- key strings -> OpKey -----------------------------------------------------------------------


def split_key(text: str) -> tuple[str, dict[str, str]]:
    """'Conv-input:224x224x3-output:112x112x32' -> ('Conv', {'input': '224x224x3', 'output': '112x112x32'})."""
    name, *parts = text.split("-")
    fields: dict[str, str] = {}
    for part in parts:
        field, sep, value = part.partition(":")
        if not (sep and field and value) or field in fields:
            raise ValueError(f"part {part!r} is not a new 'field:value'")
        fields[field] = value
    return name, fields


def parse_int(text: str, what: str) -> int:
    """'112' -> 112: a positive decimal integer (no sign, no leading zero)."""
    if not (text.isascii() and text.isdigit()) or text.startswith("0"):
        raise ValueError(f"{what} must be a positive integer, got {text!r}")
    return int(text)


def parse_map(text: str, what: str) -> tuple[int, int]:
    """'112x112x16' -> (112, 16): the side of a square HxWxC feature map and its channels."""
    parts = text.split("x")
    if len(parts) != 3:
        raise ValueError(f"{what} must be a map HxWxC, got {text!r}")
    height, width, channels = (parse_int(part, what) for part in parts)
    if height != width:
        raise ValueError(f"{what} must be a square map (H == W), got {text!r}")
    return height, channels


def derive_stride(input_size: int, output_size: int) -> int:
    """(224, 112) -> 2; (7, 4) -> 2; (14, 14) -> 1: the stride that maps one side to the other."""
    stride = -(-input_size // output_size)
    if -(-input_size // stride) != output_size:
        raise ValueError(f"no stride maps a {input_size}-pixel side to {output_size}")
    return stride


def stem_key(fields: dict[str, str], context: Context) -> OpKey:
    """{'input': '224x224x3', 'output': '112x112x32'} -> OpKey('stem', 224, 3, 32, kernel=3, stride=2)."""
    size, in_ch = parse_map(fields["input"], "input")
    out_size, out_ch = parse_map(fields["output"], "output")
    return OpKey("stem", size, in_ch, out_ch, kernel=3, stride=derive_stride(size, out_size), **_shared(context))


def mbconv_key(fields: dict[str, str], context: Context) -> OpKey:
    """{'input': '112x112x16', 'output': '56x56x24', 'expand': '3', 'kernel': '3', 'stride': '2', 'idskip': '0'}
    -> OpKey('mbconv', 112, 16, 24, kernel=3, expand=3, stride=2, shortcut=False)."""
    size, in_ch = parse_map(fields["input"], "input")
    out_size, out_ch = parse_map(fields["output"], "output")
    expand, kernel, stride = (parse_int(fields[name], name) for name in ("expand", "kernel", "stride"))
    if fields["idskip"] not in ("0", "1"):
        raise ValueError(f"idskip must be 0 or 1, got {fields['idskip']!r}")
    shortcut = fields["idskip"] == "1"
    if -(-size // stride) != out_size:
        raise ValueError(f"stride {stride} maps a {size}-pixel side to {-(-size // stride)}, not {out_size}")
    if shortcut and (stride != 1 or in_ch != out_ch):
        raise ValueError("idskip:1 (identity shortcut) needs stride 1 and equal input and output shapes")
    return OpKey("mbconv", size, in_ch, out_ch, kernel, expand, stride, shortcut, **_shared(context))


def feature_mix_key(fields: dict[str, str], context: Context) -> OpKey:
    """{'input': '7x7x320', 'output': '7x7x1280'} -> OpKey('feature_mix', 7, 320, 1280)."""
    size, in_ch = parse_map(fields["input"], "input")
    out_size, out_ch = parse_map(fields["output"], "output")
    if out_size != size:
        raise ValueError(f"a 1x1 conv keeps the map size, got {size} -> {out_size}")
    return OpKey("feature_mix", size, in_ch, out_ch, **_shared(context))


def classifier_key(fields: dict[str, str], context: Context) -> OpKey:
    """{'input': '7x7x1280', 'output': '1000'} -> OpKey('classifier', 7, 1280, 1000)."""
    size, in_ch = parse_map(fields["input"], "input")
    return OpKey("classifier", size, in_ch, parse_int(fields["output"], "output"), **_shared(context))


def _shared(context: Context) -> dict[str, Any]:
    return {"batch": context.batch, "dtype": context.dtype, "backend": context.backend}


Converter = Callable[[dict[str, str], Context], OpKey]

#: Each op name of the mobile table: the form its keys take, and its converter (read-only).
KEY_FORMS: Mapping[str, tuple[str, Converter]] = MappingProxyType({
    "Conv": ("Conv-input:HxWxC-output:HxWxC", stem_key),
    "expanded_conv": ("expanded_conv-input:HxWxC-output:HxWxC-expand:E-kernel:K-stride:S-idskip:0|1", mbconv_key),
    "Conv_1": ("Conv_1-input:HxWxC-output:HxWxC", feature_mix_key),
    "Logits": ("Logits-input:HxWxC-output:N", classifier_key),
})


def parse_key(text: str, context: Context = MOBILE_CONTEXT) -> OpKey:
    """'Conv_1-input:7x7x320-output:7x7x1280' -> OpKey('feature_mix', 7, 320, 1280, backend='pixel1-tflite')."""
    name, fields = split_key(text)
    if name not in KEY_FORMS:
        raise ValueError(f"unknown op {name!r}; expected one of {', '.join(KEY_FORMS)}")
    form, convert = KEY_FORMS[name]
    expected = set(split_key(form)[1])
    if set(fields) != expected:
        raise ValueError(f"expected a key of the form {form}")
    try:
        return convert(fields, context)
    except ValueError as err:
        raise ValueError(f"{err} (expected {form})") from None


def format_key(key: OpKey) -> str:
    """OpKey('feature_mix', 7, 320, 1280) -> 'Conv_1-input:7x7x320-output:7x7x1280': the inverse of `parse_key`
    (the batch, dtype and backend are the table's, not the key string's)."""
    if key.kind == "skip" or key.act != "relu6":
        raise ValueError(f"the Pixel 1 table format has no key for {key.describe()!r} (it covers MBConv "
                         "spaces with ReLU6 only)")
    size, out = key.input_size, key.output_size
    maps = f"input:{size}x{size}x{key.in_channels}-output:{out}x{out}x{key.out_channels}"
    if key.kind == "stem":
        return f"Conv-{maps}"
    if key.kind == "feature_mix":
        return f"Conv_1-{maps}"
    if key.kind == "classifier":
        return f"Logits-input:{size}x{size}x{key.in_channels}-output:{key.out_channels}"
    return (f"expanded_conv-{maps}-expand:{key.expand}-kernel:{key.kernel}-stride:{key.stride}"
            f"-idskip:{int(key.shortcut)}")


# -- values -> Stat -----------------------------------------------------------------------------


def parse_stat(value: Any) -> Stat:
    """{'count': 982, 'mean': 4.08, 'var': 0.25} -> Stat(mean=4.08, var=0.25, count=982)."""
    expected = "expected {count: integer >= 1, mean: number >= 0, var: number >= 0}"
    if not isinstance(value, dict) or set(value) != set(STAT_FIELDS):
        raise ValueError(f"{expected}, got {value!r}")
    count, mean, var = (value[name] for name in STAT_FIELDS)
    if not (is_count(count) and is_nonnegative(mean) and is_nonnegative(var)):
        raise ValueError(f"{expected}, got {value!r}")
    return Stat(float(mean), float(var), count)


# -- the table ----------------------------------------------------------------------------------


def mobile_header(where: str) -> dict[str, Any]:
    return {"backend": MOBILE_CONTEXT.backend, "device": MOBILE_DEVICE, "batch": MOBILE_CONTEXT.batch,
            "dtype": MOBILE_CONTEXT.dtype, "source": where, "unit": "ms"}


def table_from_mobile_yaml(data: Any, where: str = "mobile table") -> LatencyTable:
    """The ProxylessNAS mobile table (already read with `yaml.safe_load`) as a `LatencyTable`.

    Raises `LatencyTableError` naming the first malformed entry and what was expected.
    """
    if not isinstance(data, dict) or not data:
        raise LatencyTableError(f"{where}: expected a non-empty mapping of op keys such as "
                                f"'{KEY_FORMS['Conv'][0]}' to {{count, mean, var}}, got {type(data).__name__}")
    entries: dict[OpKey, Stat] = {}
    for text, value in data.items():
        try:
            if not isinstance(text, str):
                raise ValueError(f"expected a string key such as '{KEY_FORMS['Conv'][0]}'")
            key = parse_key(text)
            if key in entries:
                raise ValueError(f"a second entry for {key.describe()}")
            entries[key] = parse_stat(value)
        except ValueError as err:
            raise LatencyTableError(f"{where}: entry {text!r}: {err}") from None
    return LatencyTable(mobile_header(where), entries)
