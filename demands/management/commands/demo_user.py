import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "umsg-demo"


class Command(BaseCommand):
    help = (
        "Ensure a staff superuser for local use and print its credentials. Honours "
        "DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD; an existing account keeps its password "
        "unless DJANGO_SUPERUSER_PASSWORD is set."
    )

    def handle(self, *args, **options):
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or DEFAULT_USERNAME
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        if created or password:
            user.set_password(password or DEFAULT_PASSWORD)
        user.is_staff = user.is_superuser = user.is_active = True
        user.save()
        shown = password or (DEFAULT_PASSWORD if created else "(unchanged; set DJANGO_SUPERUSER_PASSWORD to reset)")
        self.stdout.write(self.style.SUCCESS(f"Staff login — username: {username}  password: {shown}"))
