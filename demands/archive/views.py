"""The archive's buttons on a demand's page: archive a closed demand now, restore an archived one."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_POST

from ..access import staff_required
from ..views import _triage_action, _version
from . import services


@require_POST
@staff_required
def demand_archive(request: HttpRequest, pk: int) -> HttpResponse:
    return _triage_action(request, pk, lambda demand: services.demand_archive(
        demand=demand, actor=request.user, expected_version=_version(request)))


@require_POST
@staff_required
def demand_restore(request: HttpRequest, pk: int) -> HttpResponse:
    return _triage_action(request, pk, lambda demand: services.demand_restore(
        demand=demand, actor=request.user, expected_version=_version(request)))
