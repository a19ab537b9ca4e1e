"""Who follows a demand: people who commented on it, were assigned it (outbound.dispatch), or
pressed Follow. Followers are told of its comments (Notification.Kind.COMMENT)."""

from __future__ import annotations

from ..models import Demand, Follow


def follow(*, user, demand: Demand) -> None:
    Follow.objects.get_or_create(user=user, demand=demand)


def unfollow(*, user, demand: Demand) -> None:
    Follow.objects.filter(user=user, demand=demand).delete()


def is_following(*, user, demand: Demand) -> bool:
    return Follow.objects.filter(user=user, demand=demand).exists()


def comment_recipients(*, demand: Demand, actor_id: int | None) -> list[int]:
    """The assignee and every active staff follower, but not the one who wrote the comment."""
    ids = set(Follow.objects.filter(demand=demand, user__is_active=True, user__is_staff=True).values_list("user_id", flat=True))
    if demand.assignee_id:
        ids.add(demand.assignee_id)
    ids.discard(actor_id)
    return sorted(ids)
