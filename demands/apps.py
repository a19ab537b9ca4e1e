from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DemandsConfig(AppConfig):
    name = "demands"
    verbose_name = _("Demands")

    def ready(self):
        from django.conf import settings
        from django.db.models import TextField
        from django.db.models.signals import post_delete, post_save

        from .lookups import SearchContains

        TextField.register_lookup(SearchContains)  # Demand.content: selectors.DemandFilters.apply

        from .models import Rule
        from .pipeline.rules import RuleBook

        post_save.connect(RuleBook.invalidate_all, sender=Rule, dispatch_uid="rules-invalidate-save")
        post_delete.connect(RuleBook.invalidate_all, sender=Rule, dispatch_uid="rules-invalidate-delete")

        from .models import EscalationStep, SlaPolicy
        from .sla.policies import policy_changed

        for model in (SlaPolicy, EscalationStep):  # reload the cached policies, re-time open demands
            post_save.connect(policy_changed, sender=model, dispatch_uid=f"sla-changed-save-{model.__name__}")
            post_delete.connect(policy_changed, sender=model, dispatch_uid=f"sla-changed-delete-{model.__name__}")

        from .models import SavedView
        from .outbound.ingest import WatchedViews

        for model in (SavedView, settings.AUTH_USER_MODEL):  # a view's notify flag, its owner's rights
            post_save.connect(WatchedViews.invalidate, sender=model, dispatch_uid=f"watched-views-save-{model}")
            post_delete.connect(WatchedViews.invalidate, sender=model, dispatch_uid=f"watched-views-delete-{model}")

        from .pipeline.grouping import known_groups
        from .models import DemandGroup

        post_delete.connect(known_groups.forget, sender=DemandGroup, dispatch_uid="known-groups-forget")

        # Open websockets outlive the rights they were opened with: close them when those go.
        from django.contrib.auth.signals import user_logged_out

        from . import live

        user_logged_out.connect(live.on_user_logged_out, dispatch_uid="live-logout-closes-sockets")
        post_save.connect(live.on_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="live-user-saved-closes-sockets")
