"""Create the operator (superuser) account named by DJANGO_SUPERUSER_* when it does not exist yet."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the operator account from DJANGO_SUPERUSER_USERNAME/PASSWORD/EMAIL if it is missing."

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip()
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "").strip()
        if not username or not password:
            raise CommandError("set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD")
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            self.stdout.write(f"operator account {username!r} exists; left as it is")
            return
        users.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(self.style.SUCCESS(f"operator account {username!r} created"))
