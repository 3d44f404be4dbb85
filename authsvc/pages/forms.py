"""The hosted pages' forms: their fields, labels, what was typed, and where errors go."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import g, request

from authsvc.errors import AuthError
from authsvc.pages.messages import Alert, alert_for, field_errors

SIGNUP_FIELDS = ("email", "password", "username", "display_name")
LOGIN_FIELDS = ("email", "password")
PROFILE_FIELDS = ("username", "display_name")
_SECRET_FIELDS = frozenset({"password", "current_password", "new_password"})
LABELS = {
    "email": "Email address",
    "password": "Password",
    "username": "Username",
    "display_name": "Display name",
    # the account lifecycle's forms
    "current_password": "Current password",
    "new_password": "New password",
}
UPGRADE_FIELDS = ("email", "password", "username")
PASSWORD_FIELDS = ("current_password", "new_password")
EMAIL_FIELDS = ("email",)
RESET_FIELDS = ("password",)


@dataclass
class Form:
    """A form's values as typed (passwords are never sent back), its errors and its alert."""

    fields: tuple[str, ...]
    values: dict[str, str]
    errors: dict[str, list[str]] = field(default_factory=dict)
    alert: Alert | None = None

    @classmethod
    def empty(cls, fields: tuple[str, ...], **values: str | None) -> Form:
        return cls(fields, {name: values.get(name) or "" for name in fields})

    @classmethod
    def posted(cls, fields: tuple[str, ...]) -> Form:
        return cls(fields, {name: request.form.get(name, "") for name in fields})

    def body(self) -> dict[str, str]:
        """The fields that were filled in, trimmed (passwords exactly as typed)."""
        out = {}
        for name, value in self.values.items():
            value = value if name in _SECRET_FIELDS else value.strip()
            if value:
                out[name] = value
        return out

    def fail(self, err: AuthError, email: str | None = None) -> None:
        errors = field_errors(err)
        self.errors = {name: errors[name] for name in self.fields if name in errors}
        # A message about a field this form does not have goes above the form.
        stray = [m for name, msgs in errors.items() if name not in self.fields for m in msgs]
        alert = alert_for(err, g.get("request_id"), email)
        if stray:
            alert = Alert(alert.title, alert.lines + stray, alert.code, alert.request_id)
        self.alert = alert

    def shown(self, name: str) -> str:
        return "" if name in _SECRET_FIELDS else self.values.get(name, "")

    def summary(self) -> list[tuple[str, str, str]]:
        """(field, label, first message) in the order of the form, for the error summary."""
        return [
            (name, LABELS[name], self.errors[name][0])
            for name in self.fields
            if self.errors.get(name)
        ]
