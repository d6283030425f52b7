import datetime as dt

import pytest

from evolutions.models import Evolution, EvolutionKind
from tokens.models import Endpoint


def endpoint_of(privilege: str) -> Endpoint:
    """An endpoint granted by `privilege` and by no privilege of the default test tokens' other one."""
    return Endpoint.objects.filter(privileges__code=privilege).order_by("path").first()


@pytest.fixture
def make_evolution(db):
    def make(*, endpoints=(), kind=EvolutionKind.ENDPOINTS, title="Retrait de l'endpoint v2", **fields):
        fields.setdefault("effective_on", dt.date(2027, 1, 15))
        fields.setdefault("body", "Passez à la **v3**.")
        evolution = Evolution.objects.create(kind=kind, title=title, **fields)
        evolution.endpoints.set(endpoints)
        return evolution

    return make
