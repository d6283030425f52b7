from django.urls import path

from . import feeds, views

urlpatterns = [
    path("real_time/", views.real_time, name="real_time"),
    path("incidents/", views.incidents, name="incidents"),
    path("incidents/<int:pk>/", views.incident_detail, name="incident_detail"),
    path("incidents/feed/rss/", feeds.IncidentsRssFeed(), name="incidents_rss"),
    path("incidents/feed/atom/", feeds.IncidentsAtomFeed(), name="incidents_atom"),
    path("aide/limites/", views.rate_limits_help, name="rate_limits_help"),
]
