"""Drop-in names from other email libraries, so an application migrates by changing one import.

``mailsc.compat.fastapi_mail`` mirrors fastapi-mail 1.6 (``ConnectionConfig``, ``MessageSchema``, ``FastMail``...).
"""
