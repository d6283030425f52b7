"""`{% request_queue_summary as queue %}`: the instructors' queue at a glance (admin index)."""

from django import template

from tokens import selectors
from tokens.request_queue import queue_summary

register = template.Library()


@register.simple_tag(takes_context=True)
def request_queue_summary(context):
    """The queue summary for an instructor (or anyone who may view requests); None for other staff."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not (selectors.is_instructor(user=user) or user.has_perm("tokens.view_accessrequest")):
        return None
    return queue_summary()
