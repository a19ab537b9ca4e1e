import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "umsg-demo"


class Command(BaseCommand):
    help = (
        "Ensure a staff superuser for local use and print its credentials. Honours "
        "DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD. An existing account is left alone "
        "(run against a production database, it must not bring a demoted or disabled account back) "
        "unless --reset is given."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Make an existing account an active superuser again, with DJANGO_SUPERUSER_PASSWORD "
            "(or the demo password) as its password.",
        )

    def handle(self, *args, reset=False, **options):
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or DEFAULT_USERNAME
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or DEFAULT_PASSWORD
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        if not created and not reset:
            # `make run` calls this every time: it stays idempotent and keeps printing the login.
            self.stdout.write(self.style.SUCCESS(
                f"Staff login — username: {username}  password: (existing account left unchanged; "
                "--reset makes it an active superuser with DJANGO_SUPERUSER_PASSWORD or the demo password)"
            ))
            return
        user.set_password(password)
        user.is_staff = user.is_superuser = user.is_active = True
        user.save()
        self.stdout.write(self.style.SUCCESS(f"Staff login — username: {username}  password: {password}"))
