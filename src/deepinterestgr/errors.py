"""User-facing errors: the CLI prints their message on one line, without a traceback."""

from __future__ import annotations


class DeepInterestGRError(Exception):
    """Base of every error caused by the user's input (files, fields, options), not by a bug."""


class DataError(DeepInterestGRError, ValueError):
    """Input data is missing or malformed; the message names the file, line or field and the fix."""


class ConfigError(DeepInterestGRError, ValueError):
    """A configuration file or option is invalid; the message names the field and the fix."""
