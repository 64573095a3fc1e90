"""The model the workers run: its id and the class names ``classes`` can choose from."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import ApiKeyDep, BackendsDep, SettingsDep
from api.schemas import error_responses
from core.errors import ModelNotLoaded
from core.model_card import ModelCard, public_model_id, read_card

router = APIRouter(tags=["model"], dependencies=[ApiKeyDep])


@router.get(
    "/model",
    response_model=ModelCard,
    responses=error_responses(401, 404, 503),
    summary="The detection model and its class names",
    description="Published by a worker once it has loaded `MODEL_ID`; 404 until then, saying why.",
)
def get_model(request: Request, settings: SettingsDep, backends: BackendsDep) -> ModelCard:
    card = read_card(backends.blobs, settings.model_id)
    if card is None:
        raise ModelNotLoaded(_why_no_card(request, public_model_id(settings.model_id)))
    return card


def _why_no_card(request: Request, model: str) -> str:
    """The all-in-one runs its own worker (``app.state.liveness`` reports on it): its problem,
    or that it is still loading. Alone, the API can only point at the workers."""
    liveness = getattr(request.app.state, "liveness", None)
    if liveness is None:
        return (f"no worker has loaded the model {model} yet: its class names appear here once a worker "
                "(python -m worker.main) has loaded it")
    problem = liveness()
    if problem is not None:
        return f"the model {model} is not loaded: {problem}"
    return f"the model {model} is still loading in this process; its class names appear here once it has loaded"
