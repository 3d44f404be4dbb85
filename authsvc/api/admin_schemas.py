"""Schemas of the admin API and of closing an account: they validate the requests and write the
OpenAPI document (the answers are the plain values of services/admin.py)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from authsvc.api.schemas import TextField, UserSchema
from authsvc.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from authsvc.services.admin import MAX_BAN_SECONDS, MAX_PAGE

DATE_TIME = {"format": "date-time"}
EVENT_TYPE = r"^[a-z][a-z_]{0,63}$"
USER_ID_EXAMPLE = "8d0c5d46-5f3c-4e7b-9a51-0b8f6f1f2a10"


class CloseAccountSchema(Schema):
    password = TextField(
        validate=validate.Length(min=1, max=PASSWORD_MAX_LENGTH),
        metadata={
            "format": "password",
            "example": "correct horse battery staple",
            "description": "The current password. Optional within a few minutes of logging in, "
            "and for an anonymous account.",
        },
    )


class PageQuerySchema(Schema):
    cursor = fields.String(
        validate=validate.Length(min=1, max=512),
        metadata={"description": "next_cursor of the previous page"},
    )
    limit = fields.Integer(validate=validate.Range(1, MAX_PAGE), load_default=50)


class UserListQuerySchema(PageQuerySchema):
    q = TextField(
        validate=validate.Length(min=1, max=254),
        metadata={"description": "Part of the email address, any case"},
    )


class AuditQuerySchema(PageQuerySchema):
    user_id = fields.UUID(metadata={"description": "Only events about this user"})
    type = fields.String(
        validate=validate.Regexp(EVENT_TYPE), metadata={"example": "login", "pattern": EVENT_TYPE}
    )


class JsonInteger(fields.Integer):
    """An integer as JSON Schema counts them: 86400 and 86400.0 alike; never "86400", 1.5 or
    true."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


class BanSchema(Schema):
    duration_seconds = JsonInteger(
        required=True,
        strict=True,
        validate=validate.Range(1, MAX_BAN_SECONDS),
        metadata={"example": 86400},
    )


class AdminUserSchema(UserSchema):
    last_sign_in_at = fields.String(allow_none=True, metadata=DATE_TIME)
    banned = fields.Boolean(required=True)
    banned_until = fields.String(allow_none=True, metadata=DATE_TIME)
    roles = fields.List(fields.String(), required=True)
    signup_state = fields.String(required=True, metadata={"enum": ["pending", "complete"]})
    has_profile = fields.Boolean(required=True)


ROW_EMAIL = {"description": "null for an anonymous user"}


class IdentityRowSchema(Schema):
    id = fields.UUID(required=True)
    email = fields.String(required=True, allow_none=True, metadata=ROW_EMAIL)
    signup_state = fields.String(required=True, metadata={"enum": ["pending", "complete"]})
    is_anonymous = fields.Boolean(required=True)
    email_confirmed_at = fields.String(allow_none=True, metadata=DATE_TIME)
    banned_until = fields.String(allow_none=True, metadata=DATE_TIME)
    last_sign_in_at = fields.String(allow_none=True, metadata=DATE_TIME)
    created_at = fields.String(allow_none=True, metadata=DATE_TIME)
    roles = fields.List(fields.String(), required=True)


class ProfileRowSchema(Schema):
    id = fields.UUID(required=True)
    email = fields.String(required=True, allow_none=True, metadata=ROW_EMAIL)
    username = fields.String(allow_none=True)
    display_name = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True, metadata=DATE_TIME)
    updated_at = fields.String(allow_none=True, metadata=DATE_TIME)


class UserListSchema(Schema):
    users = fields.List(fields.Nested(AdminUserSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class AccountDetailSchema(Schema):
    user = fields.Nested(AdminUserSchema, required=True, allow_none=True)
    identity = fields.Nested(IdentityRowSchema, required=True, allow_none=True)
    profile = fields.Nested(ProfileRowSchema, required=True, allow_none=True)
    consistent = fields.Boolean(
        required=True,
        metadata={"description": "a complete identity with a profile of the same id and email"},
    )


class AdminUserResultSchema(Schema):
    user = fields.Nested(AdminUserSchema, required=True)


class RevokedSchema(Schema):
    revoked = fields.Integer(required=True, metadata={"description": "sessions that were open"})


class AuditEventSchema(Schema):
    id = fields.Integer(required=True)
    type = fields.String(required=True, metadata={"pattern": EVENT_TYPE})
    user_id = fields.UUID(required=True, allow_none=True)
    actor = fields.String(
        required=True, metadata={"enum": ["user", "admin", "admin_key", "cli", "system"]}
    )
    actor_id = fields.UUID(required=True, allow_none=True)
    request_id = fields.String(required=True, allow_none=True)
    ip = fields.String(required=True, allow_none=True)
    user_agent = fields.String(required=True, allow_none=True)
    at = fields.String(required=True, metadata=DATE_TIME)
    details = fields.Dict(required=True)


class AuditPageSchema(Schema):
    events = fields.List(fields.Nested(AuditEventSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
