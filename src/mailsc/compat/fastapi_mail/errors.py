"""fastapi-mail's exception classes, with its names and its ``.expression`` attribute, so ``except`` clauses in a
migrated application keep working. mailsc's own error (with ``smtp_code``, ``hint``...) is the ``__cause__``."""

from __future__ import annotations


class ConnectionErrors(Exception):  # noqa: N818 - fastapi-mail's name
    """The SMTP server could not be reached, TLS or login failed, or the server refused the message."""

    def __init__(self, expression: str) -> None:
        super().__init__(expression)
        self.expression = expression


class WrongFile(Exception):  # noqa: N818 - fastapi-mail's name
    """An attachment is not a readable file, an ``UploadFile``, or a dict with a ``"file"`` key."""

    def __init__(self, expression: str) -> None:
        super().__init__(expression)
        self.expression = expression


class PydanticClassRequired(Exception):  # noqa: N818 - fastapi-mail's name
    """``FastMail`` was given something other than a ``ConnectionConfig`` or a ``MessageSchema``."""

    def __init__(self, expression: str) -> None:
        super().__init__(expression)
        self.expression = expression


class TemplateFolderDoesNotExist(Exception):  # noqa: N818 - fastapi-mail's name
    """A template was asked for, but ``TEMPLATE_FOLDER`` is not set."""

    def __init__(self, expression: str) -> None:
        super().__init__(expression)
        self.expression = expression


class ApiError(Exception):
    """Kept for import compatibility (fastapi-mail's email checker); mailsc never raises it."""


class DBProvaiderError(Exception):  # fastapi-mail's name (sic)
    """Kept for import compatibility (fastapi-mail's email checker); mailsc never raises it."""


class EmptyMessagesList(Exception):  # noqa: N818 - fastapi-mail's name
    """``send_message`` was given an empty list."""
