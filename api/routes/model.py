"""The model the workers run: its id and the class names ``classes`` can choose from."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ApiKeyDep, BackendsDep, SettingsDep
from api.schemas import error_responses
from core.errors import ModelNotLoaded
from core.model_card import ModelCard, read_card

router = APIRouter(tags=["model"], dependencies=[ApiKeyDep])


@router.get(
    "/model",
    response_model=ModelCard,
    responses=error_responses(401, 404, 503),
    summary="The detection model and its class names",
    description="Published by a worker once it has loaded `MODEL_ID`; 404 until then.",
)
def get_model(settings: SettingsDep, backends: BackendsDep) -> ModelCard:
    card = read_card(backends.blobs, settings.model_id)
    if card is None:
        raise ModelNotLoaded(
            f"no worker has loaded the model {settings.model_id} yet: its class names appear here "
            "once a worker (python -m worker.main) has started"
        )
    return card
