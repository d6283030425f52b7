"""Every admin form reads a URL typed without a scheme as https, third-party admins included."""

import warnings

from django import forms
from django.apps import apps
from django.contrib import admin
from django.utils.deprecation import RemovedInDjango60Warning


def test_every_admin_form_reads_an_address_without_scheme_as_https(rf, admin_user):
    request = rf.get("/")
    request.user = admin_user
    checked = []
    for model in apps.get_models():
        if not admin.site.is_registered(model):
            continue
        with warnings.catch_warnings():  # Django 6 changes the default: the admin says which one it means
            warnings.simplefilter("error", RemovedInDjango60Warning)
            model_admin = admin.site.get_model_admin(model)
            built = [(model, model_admin.get_form(request))]
            for inline in model_admin.get_inline_instances(request):
                built.append((inline.model, inline.get_formset(request).form))
        for form_model, form in built:
            for name, field in form.base_fields.items():
                if isinstance(field, forms.URLField):
                    label = f"{form_model._meta.label}.{name}"
                    assert field.clean("x.example.fr/a") == "https://x.example.fr/a", label
                    checked.append(label)
    assert "notifications.WebhookEndpoint.url" in checked, checked
    assert "dsfr.DsfrConfig.notice_link" in checked, checked  # a third-party admin
    assert "dsfr.DsfrSocialMedia.url" in checked, checked  # and its inline
