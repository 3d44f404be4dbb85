"""Request schemas of the account lifecycle's routes (responses reuse api.schemas)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from authsvc.api.schemas import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    EmailField,
    TextField,
    _username,
)

_NEW_PASSWORD = {
    "format": "password",
    "example": "correct horse battery staple",
    "minLength": PASSWORD_MIN_LENGTH,
    "maxLength": PASSWORD_MAX_LENGTH,
    "description": f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters, not a common "
    "password, not containing the email",
}
_TOKEN = {
    "validate": validate.Length(min=16, max=256),
    "metadata": {"description": "The token from the link in the mail (`?token=`)."},
}


class AnonymousSchema(Schema):
    """No fields: an anonymous account has nothing to say about itself yet."""


class UpgradeSchema(Schema):
    email = EmailField(
        required=True, metadata={"format": "email", "maxLength": 254, "example": "a@example.com"}
    )
    password = TextField(required=True, metadata=_NEW_PASSWORD)
    username = fields.String(**_username)


class TokenSchema(Schema):
    token = TextField(required=True, **_TOKEN)


class EmailSchema(Schema):
    email = EmailField(
        required=True, metadata={"format": "email", "maxLength": 254, "example": "a@example.com"}
    )


class ResetSchema(Schema):
    token = TextField(required=True, **_TOKEN)
    password = TextField(required=True, metadata=_NEW_PASSWORD)


class PasswordChangeSchema(Schema):
    current_password = TextField(
        required=True,
        validate=validate.Length(max=1024),
        metadata={"format": "password", "example": "correct horse battery staple"},
    )
    password = TextField(required=True, metadata=_NEW_PASSWORD)
