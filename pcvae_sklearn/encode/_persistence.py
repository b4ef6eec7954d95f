"""PointCloudVAE's model files and checkpoints, and the module inside a pickle.

A model file is a dict of tensors and plain Python values that
``torch.load(path, weights_only=True)`` opens without running any pickled
code. A checkpoint is a model file plus the training state that resumes the
fit (``TrainingRun.resumable_state``). Files of another format version are
refused with a message that says to refit: the package is 0.x, and nothing
is converted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ._networks import build_module, checked_device

__all__ = ["FORMAT", "FORMAT_VERSION", "save_model", "save_checkpoint", "load_model", "module_to_state", "module_from_state",
           "pickled_state", "unpickled_state"]

logger = logging.getLogger(__name__)

FORMAT = "pcvae_sklearn.PointCloudVAE"
# Bump when the layout or the meaning of a parameter changes; load() reads this version only.
# 2: the architecture parameter; pooled_batch_norm, penalty_warmup, centring and rotation_average removed.
# 3: precision_floor_ (the precision weights' floor).
FORMAT_VERSION = 3


def _to_plain(value, where: str):
    """``value`` as plain Python that ``torch.load(weights_only=True)`` accepts.

    None, bool, int, float and str pass; numpy scalars become Python scalars,
    numpy arrays lists, ``torch.device`` and paths strings; tuples, lists and
    dicts are converted element by element (tuples stay tuples). Anything else
    raises a TypeError naming ``where``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_to_plain(v, where) for v in value.tolist()]
    if isinstance(value, (torch.device, os.PathLike)):
        return str(value)
    if isinstance(value, tuple):
        return tuple(_to_plain(v, where) for v in value)
    if isinstance(value, list):
        return [_to_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {_to_plain(k, where): _to_plain(v, where) for k, v in value.items()}
    raise TypeError(f"{where} has a value of type {type(value).__name__} that a weights-only model file cannot hold.")


def _atomic_save(payload: dict, path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place.

    A process killed while writing leaves the previous file intact.
    """
    if not isinstance(path, (str, os.PathLike)):
        torch.save(payload, path)  # a file-like object
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def module_to_state(module) -> dict:
    """The module's configuration and weights (on the CPU): what a model file and a pickle hold of it."""
    return {"config": dict(module.config), "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()}}


def module_from_state(state: dict, device) -> torch.nn.Module:
    """The module of :func:`module_to_state`'s dict, in eval mode, on ``device``."""
    module = build_module(state["config"])
    module.load_state_dict(state["state_dict"])
    return module.to(device).eval()


def _payload(est, module, fitted: dict, training: dict | None) -> dict:
    """The model-file dict: tensors and plain Python only."""
    params = {}
    for name, value in est.get_params(deep=False).items():
        if isinstance(value, (np.random.RandomState, np.random.Generator)):
            value = None  # a generator object is not a setting; the fitted model does not need it
        params[name] = _to_plain(value, f"parameter {name!r}")
    plain, arrays = {}, {}
    for name, value in fitted.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            arrays[name] = torch.from_numpy(np.ascontiguousarray(value))
        else:
            plain[name] = _to_plain(value, f"attribute {name!r}")
    state = module_to_state(module)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "torch_version": str(torch.__version__),
        "params": params,
        "module_config": _to_plain(state["config"], "the module configuration"),
        "state_dict": state["state_dict"],
        "fitted": plain,
        "fitted_arrays": arrays,
        "output_config": _to_plain(dict(getattr(est, "_sklearn_output_config", {})), "the set_output configuration"),
    }
    if training is not None:
        training = dict(training)
        validation = training.pop("validation")
        training["validation"] = None if validation is None else torch.from_numpy(np.asarray(validation, dtype=np.int64))
        payload["training"] = training
    return payload


def save_model(est, path) -> None:
    """Write ``est``'s fitted model to ``path`` (no training state)."""
    fitted = {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_") and k != "module_"}
    _atomic_save(_payload(est, est.module_, fitted, None), path)


def save_checkpoint(est, run) -> None:
    """Write the run in progress to ``est.checkpoint_path``: its model, fitted attributes and training state."""
    _atomic_save(_payload(est, run.module, run.fitted_attributes(), run.resumable_state()), est.checkpoint_path)


def _read(path, target: torch.device) -> dict:
    """The payload of a model file of this format version; a clear ValueError for anything else."""
    try:
        payload = torch.load(path, map_location=target, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ... from a foreign or damaged file
        raise ValueError(
            f"{path} is not a model file that loads safely with torch.load(weights_only=True) ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); PointCloudVAE.load reads files written by "
            "PointCloudVAE.save or checkpoint_path."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a PointCloudVAE model file (it has no {FORMAT!r} format tag).")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} is a PointCloudVAE model file of format version {version!r} (written by pcvae_sklearn "
            f"{payload.get('library_version')}), but this pcvae_sklearn ({__version__}) reads format version "
            f"{FORMAT_VERSION} only. Refit the model with this version (PointCloudVAE(...).fit(X), then save()); "
            "files of other versions are not converted."
        )
    return payload


def load_model(cls, path, device="cpu"):
    """A fitted ``cls`` from a file written by :func:`save_model` or :func:`save_checkpoint`, on ``device``."""
    target = checked_device(device)
    payload = _read(path, target)
    names = set(cls._get_param_names())
    unknown = sorted(set(payload["params"]) - names)
    if unknown:  # a subclass's file read by its parent, for example
        logger.warning("%s: ignoring parameters %s does not know: %s", path, cls.__name__, unknown)
    params = {k: v for k, v in payload["params"].items() if k in names}
    params["device"] = device
    est = cls(**params)
    est.module_ = module_from_state({"config": payload["module_config"], "state_dict": payload["state_dict"]}, target)
    for name, value in payload["fitted"].items():
        setattr(est, name, value)
    for name, value in payload["fitted_arrays"].items():
        setattr(est, name, value.cpu().numpy())
    if payload["output_config"]:
        est._sklearn_output_config = dict(payload["output_config"])
    training = payload.get("training")
    if training is not None:
        training = dict(training)
        validation = training["validation"]
        training["validation"] = None if validation is None else validation.cpu().numpy()
        training["torch_rng"] = training["torch_rng"].cpu()
        est._training_state = training
    return est


def pickled_state(state: dict) -> dict:
    """A PointCloudVAE's ``__getstate__``: its module as :func:`module_to_state`'s dict, the format version added."""
    state = dict(state)  # object.__getstate__ may return the live __dict__
    module = state.pop("module_", None)
    if module is not None:
        state["_module_state"] = module_to_state(module)
    state["_format_version"] = FORMAT_VERSION
    return state


def unpickled_state(state: dict):
    """``(state, module)`` of a :func:`pickled_state`: the module rebuilt on the estimator's device (None if unfitted).

    A pickle of another format version is refused, as a file is. A model
    trained on a GPU comes back on the CPU where torch sees no GPU.
    """
    state = dict(state)
    version = state.pop("_format_version", None)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"this PointCloudVAE was pickled by a pcvae_sklearn of model format version {version!r}; this one "
            f"reads format version {FORMAT_VERSION} only. Refit the model with this version; pickles of other "
            "versions are not converted."
        )
    saved = state.pop("_module_state", None)
    if saved is None:
        return state, None
    device = torch.device(state.get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        device = torch.device("cpu")  # a GPU-trained model still loads on a CPU-only machine
    return state, module_from_state(saved, device)
