"""People, teams, API tokens and the sessions we can end on purpose."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

from alm_portal.accounts.choices import Role


class Team(models.Model):
    """A group of people that owns solutions, pipelines and environments."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A person. One role each; users with audit rows are deactivated, never deleted."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MAKER)
    display_name = models.CharField(max_length=150, blank=True)
    # Entra ID tenant id (tid claim) and object id (oid claim): together the only key single sign-on
    # maps to (a name or an e-mail address is never one). Set when the account is created by a sign-in,
    # or linked by an admin (accounts.services.user_link_entra_identity); null for local accounts (null, not
    # "", so that unlinked accounts never collide in the unique constraint below).
    entra_tenant_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    entra_object_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    teams = models.ManyToManyField(Team, through="TeamMembership", related_name="members", blank=True)

    class Meta:
        ordering = ["username"]
        constraints = [
            models.UniqueConstraint(fields=["entra_tenant_id", "entra_object_id"], name="user_entra_identity_unique")
        ]

    def __str__(self) -> str:
        return self.display_name or self.username

    @property
    def shown_name(self) -> str:
        return self.display_name or self.get_full_name() or self.username


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="team_membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class ApiToken(models.Model):
    """A bearer token for other tools. Only an HMAC of the secret is stored; the token is shown once.

    The token text is `alm_<id>_<secret>`: the id finds the row, the keyed digest proves the secret.
    A fast keyed hash (not a password hash) because it is checked on every API call, and the
    256-bit random secret cannot be guessed offline anyway.

    A token created by a request that was itself authenticated by a token has that token as its
    `parent`: it expires no later than the parent and is revoked with it (accounts.services).
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children", editable=False
    )
    name = models.CharField(max_length=100)
    scopes = models.JSONField(default=list)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="api_token_name_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class UserSession(models.Model):
    """Links a browser session to its user, so disabling a user can end every session server side."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="browser_sessions")
    session_key = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    def __str__(self) -> str:
        return f"session of {self.user} since {self.created_at:%Y-%m-%d %H:%M}"


class SignInThrottle(models.Model):
    """Failed password sign-ins of one username from one address, and the lockout they lead to.

    Keyed by the username as typed (case-folded), whether or not such a user exists, so a lockout says
    nothing about which accounts exist. Rows are written only by accounts.services.
    """

    username = models.CharField(max_length=150)
    client_ip = models.CharField(max_length=45, blank=True)  # "" when the address is unknown
    failures = models.PositiveIntegerField(default=0)
    first_failure_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["username", "client_ip"], name="sign_in_throttle_unique_username_ip")
        ]

    def __str__(self) -> str:
        return f"{self.failures} failed sign-ins of {self.username} from {self.client_ip or 'unknown'}"
