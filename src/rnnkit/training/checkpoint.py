"""Checkpoints: a run's weights and training state on disk, written so that a crash never costs the last
good one, and read so that a damaged or foreign one is refused with one clear message.

Layout of a run directory::

    run_dir/
      config.json                 the run's config (written by the trainer, not here)
      checkpoints/
        step-000120/              one complete checkpoint
          weights.safetensors     the model's tensors
          state.safetensors       the training state's tensors
          state.json              the rest of the training state, naming its tensors in state.safetensors
          manifest.json           format tag and version, step, size and SHA-256 of the three files above
        step-000123/
        latest                    pointer file: "step-000123"
        best                      pointer file: the best checkpoint's name (once one is saved as best)

Nothing is pickled: tensors go to safetensors and everything else to JSON, so loading a checkpoint never
runs code from it (``torch.load`` would). The training state is nested dicts, lists and tuples of
tensors, str, int, float, bool and None; a torch optimizer's or scheduler's ``state_dict()`` comes back
exactly (integer dict keys, tuples such as Adam's ``betas``, int and float counters, tensor ``step``s).

Crash safety. Every file is written to a temporary file in its own directory, flushed, fsynced and
renamed over its name, and the directory is then fsynced. A checkpoint is written in full under a
temporary directory name and renamed into place only when complete; the ``latest`` pointer moves after
that, and older checkpoints are pruned only after it has. Killed at any moment, a run keeps a ``latest``
that loads. (Re-saving a step that already exists, after going back to an earlier checkpoint, replaces it
with two renames; a kill between them leaves that step missing and ``load_checkpoint`` says which one to
load instead.) One process writes to a run directory at a time.

Loading checks the manifest before it trusts any file: the format tag, the manifest's own checksum, and
the size and SHA-256 of each file, before a byte of it is parsed. Names inside the JSON are never used as
paths, symbolic links are refused, and a failure is one :class:`CheckpointError` that names the file and
the problem. A corrupt ``latest`` is an error, never a silent fall back to an older checkpoint (or to a
fresh start): the message names the newest checkpoint that does verify, to be loaded explicitly.

The code is split by purpose: :mod:`.checkpoint_format` (names, limits, errors), :mod:`.atomic`
(crash-safe writes), :mod:`.state_codec` (the training state as JSON + tensors),
:mod:`.checkpoint_write`, :mod:`.checkpoint_read` and :mod:`.rng`; this module is their public face.
"""

from .atomic import atomic_write
from .checkpoint_format import (
    FILES,
    FORMAT,
    MANIFEST,
    POINTERS,
    STATE_JSON,
    STATE_TENSORS,
    VERSION,
    WEIGHTS,
    Checkpoint,
    CheckpointError,
)
from .checkpoint_read import load_checkpoint, load_weights
from .checkpoint_write import save_checkpoint
from .rng import capture_rng, restore_rng

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "FILES",
    "FORMAT",
    "MANIFEST",
    "POINTERS",
    "STATE_JSON",
    "STATE_TENSORS",
    "VERSION",
    "WEIGHTS",
    "atomic_write",
    "capture_rng",
    "load_checkpoint",
    "load_weights",
    "restore_rng",
    "save_checkpoint",
]
