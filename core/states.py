"""State buffers: synthetic draws, validation of user arrays, npy files.

A state buffer is a float32 array of shape ``(n_states, input_dim)``.
"""

from __future__ import annotations

import io
import zipfile
from typing import IO

import numpy as np

from core.configs import (  # noqa: F401 (re-exported: the stage's settings live in core.configs)
    DEFAULT_EVAL_STATES,
    DEFAULT_TRAIN_STATES,
    EVAL_STATES_SEED,
    MAX_STATES,
    SyntheticStates,
    derive_seed,
)


class StatesTooLargeError(ValueError):
    """An uploaded array that would hold more values than the caller allows; raised before it is allocated."""


def synthetic_states(spec: SyntheticStates, input_dim: int) -> np.ndarray:
    """Draw ``(n_states, input_dim)`` float32 standard-normal states, bit-identical per seed."""
    return np.random.default_rng(spec.seed).standard_normal((spec.n_states, input_dim)).astype(np.float32)


def validate_states(array: np.ndarray, input_dim: int | None = None) -> np.ndarray:
    """Check a user array is a usable state buffer and return it as contiguous float32.

    Raises ``ValueError`` for anything but a finite, numeric, non-empty 2-D
    array (and for a width other than ``input_dim`` when given).
    """
    if not isinstance(array, np.ndarray):
        raise ValueError("states must be a numpy array")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"states must be numeric, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"states must be 2-D (n_states, input_dim), got shape {list(array.shape)}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"states must be non-empty, got shape {list(array.shape)}")
    if array.shape[0] > MAX_STATES:
        raise ValueError(f"at most {MAX_STATES} states are accepted, got {array.shape[0]}")
    states = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(states).all():
        bad = int((~np.isfinite(states)).any(axis=1).sum())
        raise ValueError(f"states must be finite: {bad} row(s) hold NaN or inf")
    if input_dim is not None and states.shape[1] != input_dim:
        raise ValueError(f"states have width {states.shape[1]} but the network's input_dim is {input_dim}")
    return states


def load_npy(data: bytes, max_values: int | None = None) -> np.ndarray:
    """Parse ``.npy`` bytes without ever unpickling (object arrays are refused).

    The header is checked before any array is allocated (``check_npy_header``).
    """
    check_npy_header(io.BytesIO(data), len(data), ndim=2, max_values=max_values)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise ValueError("object arrays are not accepted: save a numeric array") from error
        raise ValueError(f"not a valid .npy file: {error}") from error
    except (OSError, EOFError) as error:
        raise ValueError(f"not a valid .npy file: {error}") from error
    if not isinstance(array, np.ndarray):
        raise ValueError("expected a single .npy array, got an archive")
    return validate_states(array)


def validate_actions(array: np.ndarray, n_states: int) -> np.ndarray:
    """Check recorded actions: a 1-D integer array, one non-negative action index per state; returned as int64."""
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iu":
        raise ValueError(f"actions must be an integer array, got {getattr(array, 'dtype', type(array).__name__)}")
    if array.ndim != 1 or array.shape[0] != n_states:
        raise ValueError(f"actions must have shape ({n_states},), one per state, got {list(array.shape)}")
    if n_states and int(array.min()) < 0:
        raise ValueError(f"actions must be non-negative action indices, got {int(array.min())}")
    return np.ascontiguousarray(array, dtype=np.int64)


def load_states_upload(
    data: bytes, actions_data: bytes | None = None, max_values: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(states, actions or None)`` from an upload: a ``.npy`` of states (optionally with a ``.npy`` of actions beside
    it), or an ``.npz`` with ``states`` and optionally ``actions``.

    Nothing is ever unpickled; an archive holding other arrays is refused naming them.
    Every array's header is checked before it is allocated or decompressed
    (``check_npy_header``; at most ``max_values`` states values).
    """
    if data.startswith(b"PK"):
        if actions_data is not None:
            raise ValueError("give actions inside the .npz or as a separate .npy, not both")
        _check_npz_headers(data, max_values)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                names = set(archive.files)
                unexpected = sorted(names - {"states", "actions"})
                if unexpected or "states" not in names:
                    raise ValueError(f"an .npz must hold 'states' and optionally 'actions', got {sorted(names)}")
                states = validate_states(archive["states"])
                actions = archive["actions"] if "actions" in names else None
        except ValueError as error:
            if "pickle" in str(error).lower():
                raise ValueError("object arrays are not accepted: save numeric arrays") from error
            raise
        except (OSError, EOFError, KeyError) as error:
            raise ValueError(f"not a valid .npz file: {error}") from error
    else:
        states = load_npy(data, max_values)
        actions = _load_array(actions_data) if actions_data is not None else None
    return states, validate_actions(actions, states.shape[0]) if actions is not None else None


def check_npy_header(stream: IO[bytes], size: int, ndim: int, max_values: int | None = None) -> None:
    """Refuse from a ``.npy`` header alone what ``np.load`` would allocate too much for, or cannot read.

    ``stream`` is at the start of the file and holds ``size`` bytes. The
    array must be numeric, ``ndim``-dimensional, with at most ``MAX_STATES``
    rows, at most ``max_values`` values (``StatesTooLargeError``) when given,
    and its data present in full.
    """
    try:
        version = np.lib.format.read_magic(stream)
        # Version 3.0 only adds UTF-8 field names, i.e. structured arrays, which are never states or actions.
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(
            version
        )
        if read_header is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _fortran_order, dtype = read_header(stream)
        header_bytes = stream.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise ValueError(f"not a valid .npy file: {error}") from error
    if dtype.hasobject:
        raise ValueError("object arrays are not accepted: save a numeric array")
    if len(shape) != ndim:
        raise ValueError(
            f"{'states must be 2-D (n_states, input_dim)' if ndim == 2 else 'actions must be 1-D'}, got shape "
            f"{list(shape)}"
        )
    if shape and shape[0] > MAX_STATES:
        raise ValueError(f"at most {MAX_STATES} states are accepted, got {shape[0]}")
    values = int(np.prod(shape, dtype=object))
    if max_values is not None and values > max_values:
        raise StatesTooLargeError(
            f"the array holds {values} values ({' x '.join(map(str, shape))}), over the limit of {max_values}"
        )
    if values * dtype.itemsize > size - header_bytes:
        raise ValueError(
            f"not a valid .npy file: the header declares shape {list(shape)} of {dtype} but the file is shorter"
        )


def _check_npz_headers(data: bytes, max_values: int | None) -> None:
    """Each member's header, read from the archive without decompressing the rest: the declared sizes bound what np.load
    allocates.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                if name in ("states", "actions"):
                    with archive.open(info) as member:
                        check_npy_header(
                            member,
                            info.file_size,
                            ndim=2 if name == "states" else 1,
                            max_values=max_values if name == "states" else None,
                        )
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"not a valid .npz file: {error}") from error


def _load_array(data: bytes) -> np.ndarray:
    check_npy_header(io.BytesIO(data), len(data), ndim=1)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"actions: not a valid .npy file: {error}") from error
    if not isinstance(array, np.ndarray):
        raise ValueError("actions: expected a single .npy array")
    return array


def dump_actions(actions: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(actions, dtype=np.int64), allow_pickle=False)
    return buffer.getvalue()


def dump_npy(states: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(states, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()
