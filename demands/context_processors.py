from . import access


def notifications(request):
    """For the top bar: the unread count (one indexed COUNT over this user's unread rows) and what
    the user may do (`access`)."""
    user = getattr(request, "user", None)
    if not access.is_staff(user):
        return {}
    from .selectors import notifications_unread_count

    return {
        "unread_notifications": notifications_unread_count(user=user),
        "is_dashboard_staff": True,
        "can_triage": access.can_triage(user),
    }
