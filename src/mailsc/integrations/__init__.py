"""Glue for web frameworks that embed mailsc: ``mailsc.integrations.fastapi`` (lifespan and ``MailerDep``)."""
