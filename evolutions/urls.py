from django.urls import path

from . import feeds, views

urlpatterns = [
    path("evolutions/", views.evolutions, name="evolutions"),
    path("evolutions/feed/atom/", feeds.EvolutionsAtomFeed(), name="evolutions_atom"),
    path("evolutions/<uuid:public_id>/", views.evolution_detail, name="evolution_detail"),
]
