"""Atom feed of the published evolutions (newest change first: a correction brings an entry back up)."""

from django.contrib.syndication.views import Feed
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed
from django.utils.html import escape
from django.utils.translation import gettext_lazy as _

from .models import Evolution


class EvolutionsAtomFeed(Feed):
    feed_type = Atom1Feed
    title = _("Évolutions de l'API")
    subtitle = _("Endpoints, paramètres d'appel, nouvelles API, sources de données, sécurité et volumétrie.")

    def link(self):
        return reverse("evolutions")

    def items(self):
        return Evolution.objects.published().prefetch_related("endpoints").order_by("-updated_at", "-id")[:50]

    def item_title(self, item):
        return f"[{item.get_kind_display()}] {item.title}"

    def item_description(self, item):
        facts = [str(_("Date d'effet : %(day)s")) % {"day": item.effective_on.isoformat()}]
        if item.deprecation_at:
            facts.append(str(_("Dépréciation : %(at)s")) % {"at": item.deprecation_at.isoformat()})
        if item.sunset_at:
            facts.append(str(_("Retrait (Sunset) : %(at)s")) % {"at": item.sunset_at.isoformat()})
        if item.corrected_at:
            facts.append(str(_("Corrigé le %(at)s")) % {"at": item.corrected_at.isoformat()})
        endpoints = ", ".join(escape(e.path) for e in item.endpoints.all())
        head = "".join(f"<p>{escape(f)}</p>" for f in facts)
        return f"{head}<p>{endpoints}</p>{item.body_html}"

    def item_link(self, item):
        return reverse("evolution_detail", args=[item.public_id])

    def item_guid(self, item):
        return f"urn:uuid:{item.public_id}"

    item_guid_is_permalink = False

    def item_pubdate(self, item):
        return item.published_at

    def item_updateddate(self, item):
        return item.updated_at

    def item_categories(self, item):
        return [item.get_kind_display()]
