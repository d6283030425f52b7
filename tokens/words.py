"""Stored codes and paths as a reader should see them: choice labels in the active language, file names."""

import posixpath

from .models import AccessRequest, Contact


def choice_label(choices, code: str) -> str:
    """The label of `code` in a TextChoices class; the code itself when it is not one of them."""
    try:
        return str(choices(code).label)
    except ValueError:
        return code


def contact_role_label(code: str) -> str:
    return choice_label(Contact.Role, code)


def request_state_label(code: str) -> str:
    return choice_label(AccessRequest.State, code)


def document_name(value) -> str:
    """The file name of a stored document (FieldFile or storage name), without its storage folders."""
    name = getattr(value, "name", value) or ""
    return posixpath.basename(str(name))


def request_field_display(field: str, value):
    """A value of an access request field (diff, audit) for display: choice labels, file names."""
    if not value:
        return value
    if field == "legal_basis_nature":
        return choice_label(AccessRequest.LegalNature, value)
    if field == "legal_basis_document":
        return document_name(value)
    return value
