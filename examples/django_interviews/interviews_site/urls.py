from django.urls import path

from interviews import views

urlpatterns = [
    path("interviews/<int:pk>/slot", views.pick_slot, name="pick-slot"),
    path("webhooks/followups", views.followups_webhook, name="followups-webhook"),
]
