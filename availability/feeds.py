"""RSS and Atom feeds of incidents (newest first)."""

from django.contrib.syndication.views import Feed
from django.utils.feedgenerator import Atom1Feed
from django.utils.translation import gettext_lazy as _

from .models import Incident


class IncidentsRssFeed(Feed):
    title = _("Incidents et maintenances des API")
    link = "/incidents/"
    description = _("Incidents en cours, maintenances programmées et incidents passés.")

    def items(self):
        return Incident.objects.prefetch_related("endpoints").order_by("-updated_at", "-id")[:50]

    def item_title(self, item):
        prefix = _("[Maintenance] ") if item.planned else ""
        return f"{prefix}{item.title}"

    def item_description(self, item):
        endpoints = ", ".join(e.path for e in item.endpoints.all())
        window = (
            f"{item.starts_at:%Y-%m-%d %H:%M %Z} → {item.ends_at:%Y-%m-%d %H:%M %Z}"
            if item.ends_at
            else (f"{item.starts_at:%Y-%m-%d %H:%M %Z} → " + str(_("en cours")))
        )
        return f"<p>{window}</p><p>{endpoints}</p>{item.description_html}"

    def item_link(self, item):
        return f"/incidents/{item.pk}/"

    def item_pubdate(self, item):
        return item.starts_at

    def item_updateddate(self, item):
        return item.updated_at


class IncidentsAtomFeed(IncidentsRssFeed):
    feed_type = Atom1Feed
    subtitle = IncidentsRssFeed.description
