import pytest


@pytest.fixture(autouse=True)
def _account_emails_now(account_emails_now):
    """Sign-up and login-link emails are sent as soon as they are asked for."""
