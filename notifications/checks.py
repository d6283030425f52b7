"""Start-up check: every reminder threshold renders, for every route (templates exist and work)."""

from django.conf import settings
from django.core.checks import Error, register
from django.template import TemplateDoesNotExist

from . import emails


def check_reminder_templates(
    thresholds=None, routes=emails.ROUTES, prefix: str = emails.TEMPLATE_PREFIX
) -> list[Error]:
    errors = []
    for threshold in thresholds if thresholds is not None else settings.REMINDER_DAYS:
        for route in routes:
            data = emails.sample(route, threshold)
            try:
                subject, text, html = emails.render_parts(data, prefix)
            except TemplateDoesNotExist as exc:
                errors.append(
                    Error(
                        f"no email template for reminder threshold {threshold} on route {route}: {exc}",
                        hint=f"add {prefix}_{route}_{{subject.txt,body.txt,body.html}} "
                        f"(or {prefix}_{route}_{threshold}_… to override one threshold)",
                        id="notifications.E001",
                    )
                )
                continue
            except Exception as exc:
                errors.append(
                    Error(
                        f"reminder email ({threshold}, {route}) fails to render: {type(exc).__name__}: {exc}",
                        id="notifications.E002",
                    )
                )
                continue
            if not subject or data.action_url not in text or data.action_url not in html:
                errors.append(
                    Error(
                        f"reminder email ({threshold}, {route}) lacks a subject or the action link",
                        id="notifications.E003",
                    )
                )
    return errors


@register()
def reminder_templates(app_configs=None, **kwargs):
    return check_reminder_templates()
