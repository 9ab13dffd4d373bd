from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from interviews import followups
from interviews.models import Interview


@receiver(post_save, sender=Interview, dispatch_uid="interviews-start-journey")
def start_journey(sender, instance: Interview, created: bool, raw: bool = False, **kwargs) -> None:
    """A new interview starts its journey once its row is committed: a rolled-back invitation
    starts nothing, and the row exists when the first webhook names it. Fixtures (`raw`) do not."""
    if created and not raw:
        transaction.on_commit(lambda: followups.start_journey(instance))
