def notifications(request):
    """The unread count shown in the top bar (one indexed COUNT over this user's unread rows)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}
    from .selectors import notifications_unread_count

    return {"unread_notifications": notifications_unread_count(user=user)}
