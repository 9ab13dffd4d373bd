from django.core.management.base import BaseCommand
from django.utils.dateparse import parse_datetime

from interviews.models import Interview


class Command(BaseCommand):
    help = "Invite a candidate: the new Interview's post_save starts its journey in Followups."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("name")
        parser.add_argument("--scheduled-at", type=parse_datetime, help="a time already agreed (ISO 8601)")

    def handle(self, email: str, name: str, scheduled_at, **options) -> None:
        interview = Interview.objects.create(candidate_email=email, candidate_name=name, scheduled_at=scheduled_at)
        self.stdout.write(f"interview {interview.pk}: journey interview-{interview.journey_id} started")
