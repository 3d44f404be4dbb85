"""Request and response schemas: they validate the bodies and write the OpenAPI document."""

from __future__ import annotations

import unicodedata
from functools import cache
from typing import Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from marshmallow import Schema, ValidationError, fields, validate

from authsvc.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from authsvc.passwords import MIN_LENGTH as PASSWORD_MIN_LENGTH

USERNAME_PATTERN = r"^[a-z0-9_]{3,32}$"
EMAIL_MAX_LENGTH = 254
EMAIL_INVALID = "Not a valid email address."

# Never part of an address, whatever email-validator's own list of unsafe characters says:
# controls (Cc), format characters (Cf: zero-width characters, bidi controls, BOM, soft hyphen),
# surrogates, private use, unassigned code points, separators of lines, paragraphs and words.
_EMAIL_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def normalize_email(value: str) -> str:
    """The one form of an address that is stored, compared and looked up: validated by
    email-validator, trimmed, NFC, and lower-cased whole in Python (never by a database's
    locale). Raises ValidationError for anything that is not an address."""
    text = value.strip(" \t\r\n")  # what a form or a paste leaves around an address
    for ch in text:
        if unicodedata.category(ch) in _EMAIL_REFUSED_CATEGORIES:
            name = unicodedata.name(ch, f"U+{ord(ch):04X}")
            raise ValidationError(
                f"{EMAIL_INVALID} It must not contain spaces, invisible or control characters "
                f"(found {name})."
            )
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(f"{EMAIL_INVALID} {exc}") from None
    # email-validator has applied NFC; lower-casing can leave a string that is not NFC.
    normalized = unicodedata.normalize("NFC", checked.normalized.lower())
    if len(normalized) > EMAIL_MAX_LENGTH:
        raise ValidationError(f"{EMAIL_INVALID} It is longer than {EMAIL_MAX_LENGTH} characters.")
    return normalized


# What TextField refuses, in the OpenAPI document: NUL (Postgres text cannot hold it).
NO_NUL_PATTERN = "^[^\\u0000]*$"


EMAIL_DESCRIPTION = (
    "trimmed, NFC and lower-cased; spaces, invisible and control characters are refused, and so "
    "are addresses at special-use domains ("
    + ", ".join(f".{d}" for d in SPECIAL_USE_DOMAIN_NAMES)
    + ")"
)


class TextField(fields.String):
    """A string that is valid Unicode text (no lone surrogates, no NUL)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["metadata"] = {"pattern": NO_NUL_PATTERN, **(kwargs.get("metadata") or {})}
        super().__init__(*args, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Must be valid Unicode text.") from None
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        return text


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


# What EmailField refuses beyond a valid address, in the OpenAPI document (ECMA-262 has no flag
# for case, hence the classes): NUL, and a domain that ends in a special-use name. Client tools
# that generate "valid" data from the document then generate addresses the service accepts.
EMAIL_PATTERN = (
    "^(?![^\\u0000]*[@.](?:"
    + "|".join(_any_case(d) for d in SPECIAL_USE_DOMAIN_NAMES)
    + ")\\.?\\s*$)[^\\u0000]*$"
)


class EmailField(TextField):
    """An email address, in its normalised form (see normalize_email)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["metadata"] = {**(kwargs.get("metadata") or {}), "pattern": EMAIL_PATTERN}
        super().__init__(*args, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return normalize_email(super()._deserialize(value, attr, data, **kwargs))


# Format characters (Cf) are invisible, and most only disguise text (bidi overrides, zero-width
# spaces). These few carry meaning in ordinary names and stay: the joiners of Persian, Arabic and
# Indic scripts and of emoji sequences (ZWNJ, ZWJ: a family emoji is three people joined by ZWJ),
# and the tag characters of subdivision flags.
_MEANINGFUL_FORMAT_CHARACTERS = frozenset("\u200c\u200d") | frozenset(
    map(chr, range(0xE0020, 0xE0080))
)


def _no_control_characters(value: str) -> None:
    for ch in value:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs") or (
            category == "Cf" and ch not in _MEANINGFUL_FORMAT_CHARACTERS
        ):
            name = unicodedata.name(ch, f"U+{ord(ch):04X}")
            raise ValidationError(
                f"Must not contain control or invisible formatting characters (found {name})."
            )
    if not any(unicodedata.category(ch)[0] not in "CZM" for ch in value):
        raise ValidationError("Must contain at least one visible character.")


DISPLAY_NAME: dict[str, Any] = {
    "minLength": 1,
    "maxLength": 100,
    "description": "trimmed; control and invisible formatting characters are refused, except "
    "the joiners of scripts and emoji (ZWNJ, ZWJ) and the tag characters of flags",
}


class DisplayNameField(TextField):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not 1 <= len(text) <= 100:
            raise ValidationError("Must be between 1 and 100 characters.")
        _no_control_characters(text)
        return text


_username: dict[str, Any] = {
    # \Z, not $: "$" would also accept a trailing newline.
    "validate": validate.Regexp(
        USERNAME_PATTERN.removesuffix("$") + r"\Z",
        error="Use 3 to 32 characters: lower-case letters, digits and underscores.",
    ),
    "metadata": {"pattern": USERNAME_PATTERN, "example": "alice_01"},
}


class SignupSchema(Schema):
    email = EmailField(
        required=True,
        metadata={
            "format": "email",
            "maxLength": EMAIL_MAX_LENGTH,
            "example": "alice@example.com",
            "description": EMAIL_DESCRIPTION,
        },
    )
    password = TextField(
        required=True,
        metadata={
            "format": "password",
            "example": "correct horse battery staple",
            "minLength": PASSWORD_MIN_LENGTH,
            "maxLength": PASSWORD_MAX_LENGTH,
            "description": f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters, not a "
            "common password, not containing the email",
        },
    )
    username = fields.String(**_username)
    display_name = DisplayNameField(metadata={**DISPLAY_NAME, "example": "Alice"})


class LoginSchema(Schema):
    email = EmailField(
        required=True,
        metadata={
            "format": "email",
            "example": "alice@example.com",
            "description": EMAIL_DESCRIPTION,
        },
    )
    password = TextField(
        required=True, metadata={"format": "password", "example": "correct horse battery staple"}
    )


class RefreshSchema(Schema):
    refresh_token = TextField(required=True, validate=validate.Length(min=1, max=512))


class LogoutSchema(Schema):
    scope = fields.String(validate=validate.OneOf(["local", "global"]), load_default="local")


class ProfileUpdateSchema(Schema):
    username = fields.String(**_username)
    display_name = DisplayNameField(metadata=DISPLAY_NAME)


class UserSchema(Schema):
    id = fields.UUID(required=True)
    email = fields.String(
        required=True, allow_none=True, metadata={"description": "null for an anonymous user"}
    )
    username = fields.String(allow_none=True)
    display_name = fields.String(allow_none=True)
    email_confirmed = fields.Boolean(required=True)
    is_anonymous = fields.Boolean(required=True)
    created_at = fields.String(required=True, metadata={"format": "date-time"})


class SessionSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"enum": ["bearer"]})
    expires_in = fields.Integer(required=True)
    expires_at = fields.Integer(required=True)


class AuthResultSchema(Schema):
    user = fields.Nested(UserSchema, required=True)
    session = fields.Nested(SessionSchema, required=True)


class SignupResultSchema(Schema):
    user = fields.Nested(UserSchema, required=True)
    session = fields.Nested(
        SessionSchema,
        required=True,
        allow_none=True,
        metadata={
            "description": "null only when the account is whole but no session could "
            "be started: log in"
        },
    )


class SessionResultSchema(Schema):
    session = fields.Nested(SessionSchema, required=True)


class UserResultSchema(Schema):
    user = fields.Nested(UserSchema, required=True)


class EmptySchema(Schema):
    pass


class HealthSchema(Schema):
    status = fields.String(required=True)


class ReadySchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())


class VersionSchema(Schema):
    version = fields.String(required=True)
    git_sha = fields.String(allow_none=True)
    started_at = fields.String(required=True, metadata={"format": "date-time"})
    schema_version = fields.String(allow_none=True)
    backend = fields.String(required=True)


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "UPPER_SNAKE_CODE"})
    message = fields.String(required=True)
    details = fields.Dict()
    request_id = fields.String(required=True)


class ErrorSchema(Schema):
    """Every error, in the one envelope."""

    success = fields.Boolean(required=True, metadata={"enum": [False]})
    error = fields.Nested(ErrorBodySchema, required=True)


def error_schema(*codes: str) -> dict[str, Any]:
    """The error envelope for the OpenAPI document, its `error.code` one of `codes`."""
    return {
        "allOf": [
            ErrorSchema,
            {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string", "enum": list(codes)}},
                    }
                },
            },
        ]
    }


@cache
def enveloped(schema: type[Schema]) -> type[Schema]:
    """`{"success": true, "data": <schema>}`, named for the OpenAPI document."""
    name = schema.__name__.removesuffix("Schema") + "EnvelopeSchema"
    return type(
        name,
        (Schema,),
        {
            "success": fields.Boolean(required=True, metadata={"enum": [True]}),
            "data": fields.Nested(schema, required=True),
        },
    )
