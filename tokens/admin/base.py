"""What the token admin modules share."""


class ReadOnlyAdminMixin:
    """An audit trail or a record kept by services: viewed in the admin, never added, changed or deleted there."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
