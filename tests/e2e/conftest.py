import pytest


@pytest.fixture
def report(request):
    """Fault tests say what they did and what they found; tests/conftest.py prints it in the terminal summary."""
    lines: list[str] = []
    yield lines.append
    request.node.user_properties.append(("report", "\n".join(lines)))
