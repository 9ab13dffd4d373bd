from django import forms
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from followups_client import FollowupsError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from interviews import events, followups
from interviews.models import Interview, ProcessedEvent

SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class SlotForm(forms.Form):
    scheduled_at = forms.DateTimeField(help_text="ISO 8601, e.g. 2026-12-01T09:00:00+01:00")


def pick_slot(request: HttpRequest, pk: int) -> HttpResponse:
    """The candidate's slot-selection link (in every follow-up). Only `scheduled_at` is written
    here: the status follows the journey, through the webhook."""
    interview = get_object_or_404(Interview, pk=pk)
    form = SlotForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        scheduled_at = form.cleaned_data["scheduled_at"]
        try:
            followups.pick_slot(interview, scheduled_at)
        except FollowupsError as err:
            if err.status not in (409, 422):
                raise
            form.add_error("scheduled_at", f"{err.detail}")  # in the past, or the interview is over
        else:
            interview.scheduled_at = scheduled_at
            interview.save(update_fields=["scheduled_at"])
            return render(request, "interviews/slot.html", {"interview": interview, "picked": True})
    return render(request, "interviews/slot.html", {"interview": interview, "form": form},
                  status=400 if form.errors else 200)


@csrf_exempt  # signed instead: Standard Webhooks, HMAC-SHA256 with the endpoint's secret
@require_POST
def followups_webhook(request: HttpRequest) -> JsonResponse:
    """Followups' event webhook: verified, applied once per webhook-id, answered 2xx once kept."""
    if not settings.FOLLOWUPS_WEBHOOK_SECRET:
        raise ImproperlyConfigured("FOLLOWUPS_WEBHOOK_SECRET is not set: no delivery can be verified")
    if missing := [name for name in SIGNED_HEADERS if not request.headers.get(name)]:
        return JsonResponse({"error": f"missing {', '.join(missing)}"}, status=400)
    try:
        # also refuses a timestamp more than 5 minutes off: a recorded delivery replayed later
        event = Webhook(settings.FOLLOWUPS_WEBHOOK_SECRET).verify(request.body, request.headers)
    except WebhookVerificationError as err:
        return JsonResponse({"error": str(err)}, status=401)
    with transaction.atomic():
        _, new = ProcessedEvent.objects.get_or_create(id=request.headers["webhook-id"],
                                                      defaults={"type": event["type"]})
        if new:
            events.apply(event)
    return JsonResponse({"applied": new})
