# Admin of the token registry (issue 2). Access-request admin lives in admin_requests.py (issue 4).

from .admin_requests import *  # noqa: E402,F403
