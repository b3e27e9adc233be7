"""The Django project of the node. Importing it loads the Celery app so `@shared_task` binds to it."""

from connext_site.celery import app as celery_app

__all__ = ["celery_app"]
