"""What the workers' model can detect, published where the API can read it.

The API has no torch and never loads the model, yet users need its class names: to know
what to type in ``classes``, and to hear about a typo before a 2 GB video is uploaded
rather than when the job fails. So each worker, once it has loaded a model, writes a small
card for it to blob storage; the API reads the card for the model a job would use.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from core.backends.base import BlobStore
from core.errors import NotFound
from core.jobs import utcnow

log = logging.getLogger(__name__)

CARD_PREFIX = "models/"


class ModelCard(BaseModel):
    model_id: str = Field(description="A Hugging Face Hub id, or local:<folder> for a checkpoint on the workers' disk.")
    architecture: str
    classes: list[str] = Field(description="Distinct class names, in the model's class-id order.")
    random_weights: bool = Field(description="True: a randomly initialised test model; its detections are not real.")
    device: str = Field(description="Where the worker that last published this card runs the model.")
    runtime: str = Field(default="torch", description="What runs the model there: torch, onnxruntime or openvino "
                                                      "(RUNTIME; a runtime refused by its faithfulness check is not).")
    precision: str = Field(default="fp32", description="The runtime's arithmetic: fp32, or bf16/int8 when "
                                                       "RUNTIME_PRECISION asked for it (detections deviate).")
    loaded_at: datetime = Field(default_factory=utcnow)

    def unknown_classes(self, names: Iterable[str]) -> list[str]:
        """The names this model does not know (compared case-insensitively, as the detector does)."""
        known = {name.lower() for name in self.classes}
        return [name for name in names if name.strip().lower() not in known]


def card_path(model_id: str) -> str:
    """One blob per model id. Ids are hub names or local paths, so they are hashed, not used as names."""
    return f"{CARD_PREFIX}{hashlib.sha256(model_id.encode()).hexdigest()[:24]}.json"


def public_model_id(model_id: str) -> str:
    """How answers name a model: a Hub id (``org/name[@revision]``) as it is, a checkpoint on
    the server's disk by its folder's name alone (``local:rtdetr-tiny``): a server path tells a
    client nothing it can use, and something about the server it should not learn."""
    text = model_id.strip()
    looks_local = (text.startswith(("/", ".", "~", "\\")) or text[1:3] in (":\\", ":/") or text.count("/") > 1
                   or Path(text).expanduser().exists())
    if not looks_local:
        return text
    folder = Path(text.replace("\\", "/").rstrip("/")).name
    return f"local:{folder or 'model'}"


def publish_card(blobs: BlobStore, card: ModelCard, model_id: str | None = None) -> None:
    """Store ``card`` where ``read_card(model_id)`` finds it (``model_id``: the MODEL_ID it was
    loaded from, when the card names the model otherwise; see ``public_model_id``)."""
    path = card_path(model_id or card.model_id)
    blobs.write_small(path, card.model_dump_json().encode(), "application/json")


def read_card(blobs: BlobStore, model_id: str) -> ModelCard | None:
    """The card a worker published for ``model_id``; None when no worker has loaded that model yet."""
    try:
        text = blobs.read_small(card_path(model_id))
    except NotFound:
        return None
    try:
        return ModelCard.model_validate_json(text)
    except ValidationError:  # e.g. written by another version; treated as absent, never blocks a job
        log.warning("ignoring the unreadable model card %s for %s", card_path(model_id), model_id)
        return None
