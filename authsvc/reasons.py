"""Why a storage step failed: the stable words in SIGNUP_FAILED's `details.reason`."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a storage step failed: the stable word in SIGNUP_FAILED's `details.reason`."""

    FOREIGN_KEY_VIOLATION = "foreign_key_violation"
    UNIQUE_VIOLATION = "unique_violation"
    CHECK_VIOLATION = "check_violation"
    NOT_NULL_VIOLATION = "not_null_violation"
    PERMISSION_DENIED = "permission_denied"
    UNDEFINED_TABLE = "undefined_table"
    UNDEFINED_SCHEMA = "undefined_schema"
    UNDEFINED_COLUMN = "undefined_column"
    STATEMENT_TIMEOUT = "statement_timeout"
    LOCK_TIMEOUT = "lock_timeout"
    SERIALIZATION_FAILURE = "serialization_failure"
    DEADLOCK_DETECTED = "deadlock_detected"
    TRIGGER_RAISED = "trigger_raised"
    READ_ONLY = "read_only"
    INVALID_DATA = "invalid_data"
    DATABASE_ERROR = "database_error"
    CONNECTION_LOST = "connection_lost"
    # The saga's own findings.
    NO_ROW_WRITTEN = "no_row_written"
    NO_ROW_RETURNED = "no_row_returned"
    ID_MISMATCH = "id_mismatch"
    EMAIL_MISMATCH = "email_mismatch"
    IDENTITY_MISSING = "identity_missing"
    UNEXPECTED_ERROR = "unexpected_error"
    # Supabase's services.
    NOT_FOUND = "not_found"
    NOT_SINGLE_ROW = "not_single_row"
    API_KEY_REJECTED = "api_key_rejected"
    AUTH_KEY_REJECTED = "auth_key_rejected"
    AUTH_SERVER_ERROR = "auth_server_error"
    AUTH_REFUSED = "auth_refused"
    UNEXPECTED_RESPONSE = "unexpected_response"
    REST_ERROR = "rest_error"
