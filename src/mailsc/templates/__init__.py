"""Email templates: Jinja2 in a bounded sandbox; stored (through the API, versioned) or files in a folder.

``FileTemplates(folder).render(name, variables)`` and ``StoredTemplates().render(source, variables)`` return a
``RenderedTemplate`` (subject, HTML with its CSS inlined, text part derived from the HTML when the template has
none). ``TemplateCatalog`` resolves a name for sending: the latest stored version, else the files. Every failure is
a ``TemplateError`` naming the template, the line and the missing variable.
"""

from .catalog import StoredLookup, TemplateCatalog
from .compose import check_template_fields, message_from_template
from .files import FileTemplates
from .limits import TemplateLimits
from .render import RenderedTemplate, TemplateSource
from .stored import StoredTemplates

__all__ = [
    "FileTemplates",
    "RenderedTemplate",
    "StoredLookup",
    "StoredTemplates",
    "TemplateCatalog",
    "TemplateLimits",
    "TemplateSource",
    "check_template_fields",
    "message_from_template",
]
